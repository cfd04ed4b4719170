package secrets

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// etcdSecrets keeps secrets as raw etcd values shaped like the store's
// Secret objects, with the same compare-and-swap on the mod revision that
// the store uses. It backs SecretStore in the tests until the Secret kind
// exists.
type etcdSecrets struct {
	cli    *clientv3.Client
	prefix string
}

type rawSecret struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"metadata"`
	Sealed *SealedData `json:"sealed,omitempty"`
}

func (e *etcdSecrets) key(ns, name string) string { return e.prefix + ns + "/" + name }

func (e *etcdSecrets) List(ctx context.Context) ([]StoredSecret, error) {
	resp, err := e.cli.Get(ctx, e.prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	out := make([]StoredSecret, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var r rawSecret
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		out = append(out, StoredSecret{Namespace: r.Metadata.Namespace, Name: r.Metadata.Name, Sealed: r.Sealed, Revision: kv.ModRevision, Ref: r})
	}
	return out, nil
}

func (e *etcdSecrets) Update(ctx context.Context, s StoredSecret) error {
	r := s.Ref.(rawSecret)
	r.Sealed = s.Sealed
	_, err := e.cas(ctx, s.Namespace, s.Name, s.Revision, r)
	return err
}

// cas writes r if the key is at rev (0: absent) and returns the new
// revision.
func (e *etcdSecrets) cas(ctx context.Context, ns, name string, rev int64, r rawSecret) (int64, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return 0, err
	}
	k := e.key(ns, name)
	cmp := clientv3.Compare(clientv3.ModRevision(k), "=", rev)
	if rev == 0 {
		cmp = clientv3.Compare(clientv3.CreateRevision(k), "=", 0)
	}
	resp, err := e.cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(k, string(b))).Else(clientv3.OpGet(k)).Commit()
	if err != nil {
		return 0, err
	}
	if !resp.Succeeded {
		if len(resp.Responses[0].GetResponseRange().Kvs) == 0 {
			return 0, fmt.Errorf("secret %s/%s %w", ns, name, v1.ErrNotFound)
		}
		return 0, fmt.Errorf("secret %s/%s: %w", ns, name, v1.ErrConflict)
	}
	return resp.Header.Revision, nil
}

// write stores new values for ns/name the way the API server will: read,
// seal under the fence, compare-and-swap, retry on conflict.
func (e *etcdSecrets) write(ctx context.Context, c *Codec, ns, name string, data map[string][]byte) error {
	for {
		resp, err := e.cli.Get(ctx, e.key(ns, name))
		if err != nil {
			return err
		}
		var rev int64
		var r rawSecret
		if len(resp.Kvs) == 1 {
			rev = resp.Kvs[0].ModRevision
			if err := json.Unmarshal(resp.Kvs[0].Value, &r); err != nil {
				return err
			}
		}
		r.Kind = "Secret"
		r.Metadata.Namespace, r.Metadata.Name = ns, name
		err = c.SealAndWrite(ns, name, data, func(s *SealedData) error {
			r.Sealed = s
			_, err := e.cas(ctx, ns, name, rev, r)
			return err
		})
		if errors.Is(err, v1.ErrConflict) || errors.Is(err, v1.ErrNotFound) {
			continue
		}
		return err
	}
}

func TestRotateAgainstEtcdWhileWritersRun(t *testing.T) {
	t.Setenv(EnvMasterKey, "")
	etcdDir := t.TempDir()
	e := storetest.EmbeddedIn(t, etcdDir)
	kr, err := LoadKeyring(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c := NewCodec(kr)
	st := &etcdSecrets{cli: e.Client, prefix: "/gantry-test/secrets/"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// marker makes every value unique and greppable.
	marker := func(ns, name string, gen int) string {
		return fmt.Sprintf("PLAINTEXT-%s-%s-gen%04d", ns, name, gen)
	}
	const n, writers = 60, 4
	names := make([][2]string, n)
	for i := range n {
		ns, name := fmt.Sprintf("team%d", i%4), fmt.Sprintf("secret-%02d", i)
		names[i] = [2]string{ns, name}
		if err := st.write(ctx, c, ns, name, map[string][]byte{"v": []byte(marker(ns, name, 0))}); err != nil {
			t.Fatal(err)
		}
	}
	var oldKeys [][]byte
	oldKeys = append(oldKeys, bytes.Clone(kr.current().raw))

	// Each writer owns every writers-th secret and keeps rewriting it,
	// remembering the last value etcd acknowledged.
	last := make([]int, n)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for gen := 1; ; gen++ {
				for i := w; i < n; i += writers {
					select {
					case <-stop:
						return
					default:
					}
					ns, name := names[i][0], names[i][1]
					if err := st.write(ctx, c, ns, name, map[string][]byte{"v": []byte(marker(ns, name, gen))}); err != nil {
						t.Error(err)
						return
					}
					last[i] = gen
				}
			}
		})
	}

	var results []RotateResult
	for range 3 {
		res, err := c.Rotate(ctx, st, nil)
		if err != nil {
			close(stop)
			wg.Wait()
			t.Fatal(err)
		}
		results = append(results, res)
		oldKeys = append(oldKeys, bytes.Clone(kr.current().raw))
	}
	oldKeys = oldKeys[:len(oldKeys)-1] // the last one is current
	close(stop)
	wg.Wait()
	t.Logf("rotations: %+v", results)

	list, err := st.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != n {
		t.Fatalf("%d secrets in etcd, want %d", len(list), n)
	}
	byKey := map[string]StoredSecret{}
	for _, s := range list {
		byKey[s.Namespace+"/"+s.Name] = s
	}
	for i, nn := range names {
		s := byKey[nn[0]+"/"+nn[1]]
		if s.Sealed.KeyID != kr.CurrentID() {
			t.Errorf("%s/%s sealed with %s, want %s", nn[0], nn[1], s.Sealed.KeyID, kr.CurrentID())
		}
		got, err := c.Open(nn[0], nn[1], s.Sealed)
		if err != nil {
			t.Errorf("%s/%s: %v", nn[0], nn[1], err)
			continue
		}
		if want := marker(nn[0], nn[1], last[i]); string(got["v"]) != want {
			t.Errorf("%s/%s = %q, want the last acknowledged write %q", nn[0], nn[1], got["v"], want)
		}
		for j, raw := range oldKeys {
			mk, _ := newMasterKey(raw)
			if _, err := open(mk, nn[0], nn[1], s.Sealed); err == nil {
				t.Errorf("%s/%s opens with retired key %d", nn[0], nn[1], j)
			}
		}
	}

	// Nothing under the etcd data directory (WAL, snapshots, bolt
	// database) holds a value or a master key in plain text, in any
	// generation written.
	needles := [][]byte{[]byte("PLAINTEXT-")}
	for _, raw := range append(oldKeys, kr.current().raw) {
		needles = append(needles, raw, []byte(EncodeKey(raw)))
	}
	files := 0
	err = filepath.WalkDir(etcdDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		for _, nd := range needles {
			if bytes.Contains(b, nd) {
				t.Errorf("%s contains plaintext %q…", p, nd[:min(len(nd), 10)])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatal("no files under the etcd data directory")
	}
	// The scan can find a value: the sealed JSON carries the key ID.
	found := false
	_ = filepath.WalkDir(etcdDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(kr.CurrentID())) {
				found = true
			}
		}
		return nil
	})
	if !found {
		t.Fatal("the current key ID is not in any etcd file: the scan does not see the stored values")
	}
	if strings.Contains(fmt.Sprint(results), "PLAINTEXT") {
		t.Fatal("rotation result carries a value")
	}
}
