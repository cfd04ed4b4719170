package secrets

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// memStore is a SecretStore in memory with the same compare-and-swap rule
// as the real store. beforeUpdate, when set, runs before each Update
// commits, so a test can slip a concurrent write in.
type memStore struct {
	mu           sync.Mutex
	rev          int64
	items        map[string]StoredSecret
	beforeUpdate func(s StoredSecret)
	lists        int
}

func newMemStore() *memStore { return &memStore{items: map[string]StoredSecret{}} }

func (m *memStore) put(ns, name string, s *SealedData) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rev++
	m.items[ns+"/"+name] = StoredSecret{Namespace: ns, Name: name, Sealed: s, Revision: m.rev}
}

func (m *memStore) List(context.Context) ([]StoredSecret, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lists++
	out := make([]StoredSecret, 0, len(m.items))
	for _, s := range m.items {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Namespace+"/"+out[i].Name < out[j].Namespace+"/"+out[j].Name })
	return out, nil
}

func (m *memStore) Update(_ context.Context, s StoredSecret) error {
	if m.beforeUpdate != nil {
		m.beforeUpdate(s)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.items[s.Namespace+"/"+s.Name]
	if !ok {
		return fmt.Errorf("secret %s/%s %w", s.Namespace, s.Name, v1.ErrNotFound)
	}
	if cur.Revision != s.Revision {
		return fmt.Errorf("secret %s/%s: %w", s.Namespace, s.Name, v1.ErrConflict)
	}
	m.rev++
	s.Revision = m.rev
	m.items[s.Namespace+"/"+s.Name] = s
	return nil
}

// seedSecrets stores n sealed secrets and returns their values by
// "ns/name".
func seedSecrets(t *testing.T, c *Codec, st *memStore, n int) map[string]string {
	t.Helper()
	want := map[string]string{}
	for i := range n {
		ns, name := fmt.Sprintf("ns%d", i%3), fmt.Sprintf("s%d", i)
		v := fmt.Sprintf("value-%d", i)
		st.put(ns, name, mustSeal(t, c, ns, name, map[string][]byte{"v": []byte(v)}))
		want[ns+"/"+name] = v
	}
	return want
}

// checkRotated asserts that every stored secret is sealed with the
// codec's current key, opens to its wanted value, and cannot be opened by
// any of the old keys, even ignoring the key ID.
func checkRotated(t *testing.T, c *Codec, st *memStore, want map[string]string, old ...[]byte) {
	t.Helper()
	list, _ := st.List(context.Background())
	if len(list) != len(want) {
		t.Fatalf("%d secrets stored, want %d", len(list), len(want))
	}
	for _, s := range list {
		key := s.Namespace + "/" + s.Name
		if s.Sealed.KeyID != c.Keyring().CurrentID() {
			t.Errorf("%s sealed with %s, want %s", key, s.Sealed.KeyID, c.Keyring().CurrentID())
		}
		got, err := c.Open(s.Namespace, s.Name, s.Sealed)
		if err != nil {
			t.Errorf("%s does not open with the new key: %v", key, err)
			continue
		}
		if string(got["v"]) != want[key] {
			t.Errorf("%s = %q, want %q", key, got["v"], want[key])
		}
		for _, raw := range old {
			ok, _ := NewKeyring(raw)
			if _, err := NewCodec(ok).Open(s.Namespace, s.Name, s.Sealed); err == nil {
				t.Errorf("%s opens with an old key", key)
			}
			mk, _ := newMasterKey(raw)
			if _, err := open(mk, s.Namespace, s.Name, s.Sealed); !errors.Is(err, ErrCorrupt) {
				t.Errorf("%s: old key material forced onto it: got %v, want ErrCorrupt", key, err)
			}
		}
	}
	if ids := c.Keyring().IDs(); len(ids) != 1 {
		t.Errorf("keyring still holds %v after the rotation", ids)
	}
}

func TestRotateMovesEverySecretToANewKeyAndRetiresTheOld(t *testing.T) {
	t.Setenv(EnvMasterKey, "")
	dir := t.TempDir()
	kr, err := LoadKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	oldRaw := append([]byte(nil), kr.current().raw...)
	c := NewCodec(kr)
	st := newMemStore()
	want := seedSecrets(t, c, st, 30)
	st.put("ns0", "empty", nil) // a secret without sealed data has nothing to move

	res, err := c.Rotate(context.Background(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.KeyID == KeyID(oldRaw) || res.KeyID != kr.CurrentID() {
		t.Fatalf("rotated to %s (old %s, current %s)", res.KeyID, KeyID(oldRaw), kr.CurrentID())
	}
	if res.Resealed != 30 || res.Passes != 1 {
		t.Fatalf("resealed %d in %d passes, want 30 in 1", res.Resealed, res.Passes)
	}
	if len(res.Retired) != 1 || res.Retired[0] != KeyID(oldRaw) {
		t.Fatalf("retired %v, want [%s]", res.Retired, KeyID(oldRaw))
	}
	st.mu.Lock()
	delete(st.items, "ns0/empty")
	st.mu.Unlock()
	checkRotated(t, c, st, want, oldRaw)

	// The key file holds the new key only: a restart keeps it and the
	// old key is gone from disk.
	b, err := os.ReadFile(KeyFile(dir))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), EncodeKey(oldRaw)) {
		t.Fatal("old key still in the key file")
	}
	restarted, err := LoadKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ids := restarted.IDs(); len(ids) != 1 || ids[0] != res.KeyID {
		t.Fatalf("after restart the keyring is %v, want [%s]", ids, res.KeyID)
	}
	fi, _ := os.Stat(KeyFile(dir))
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("rewritten key file has mode %04o", fi.Mode().Perm())
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(KeyFile(dir)), ".master.key-*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}

	t.Run("a second rotation moves everything again", func(t *testing.T) {
		prev := append([]byte(nil), kr.current().raw...)
		res2, err := c.Rotate(context.Background(), st, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res2.KeyID == res.KeyID || res2.Resealed != 30 {
			t.Fatalf("second rotation: %+v", res2)
		}
		checkRotated(t, c, st, want, oldRaw, prev)
	})
}

func TestRotateResealsUnderFreshDataKeys(t *testing.T) {
	c, _ := newTestCodec(t)
	st := newMemStore()
	seedSecrets(t, c, st, 3)
	before, _ := st.List(context.Background())
	if _, err := c.Rotate(context.Background(), st, nil); err != nil {
		t.Fatal(err)
	}
	after, _ := st.List(context.Background())
	for i := range before {
		if string(before[i].Sealed.Ciphertext) == string(after[i].Sealed.Ciphertext) {
			t.Errorf("%s kept its ciphertext: an old wrapped data key would still open it", before[i].Name)
		}
	}
}

func TestRotateFinishesAnInterruptedRotation(t *testing.T) {
	oldRaw, _ := GenerateKey()
	newRaw, _ := GenerateKey()
	path := filepath.Join(t.TempDir(), "master.key")
	// The state a crash in the middle of a rotation leaves: the new key
	// first in the file, the old one after it, secrets under both.
	if err := os.WriteFile(path, []byte(EncodeKey(newRaw)+"\n"+EncodeKey(oldRaw)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kr, err := OpenKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c := NewCodec(kr)
	oldOnly, _ := NewKeyring(oldRaw)
	st := newMemStore()
	want := seedSecrets(t, NewCodec(oldOnly), st, 4)
	for k, v := range seedSecrets(t, c, st, 7) {
		want[k] = v // overwrites s0..s3 with new-key seals; s4..s6 are new-key only
	}
	seedOld := map[string]string{}
	for i := 10; i < 14; i++ {
		ns, name := "old", fmt.Sprintf("s%d", i)
		st.put(ns, name, mustSeal(t, NewCodec(oldOnly), ns, name, map[string][]byte{"v": []byte("o")}))
		seedOld[ns+"/"+name] = "o"
	}
	for k, v := range seedOld {
		want[k] = v
	}

	res, err := c.Rotate(context.Background(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.KeyID != KeyID(newRaw) {
		t.Fatalf("rotation made another key (%s) instead of finishing with %s", res.KeyID, KeyID(newRaw))
	}
	if res.Resealed != 4 {
		t.Fatalf("resealed %d, want the 4 secrets still under the old key", res.Resealed)
	}
	checkRotated(t, c, st, want, oldRaw)
}

func TestRotateDoesNotLoseAConcurrentWrite(t *testing.T) {
	c, oldRaw := newTestCodec(t)
	st := newMemStore()
	want := seedSecrets(t, c, st, 5)
	raced := false
	st.beforeUpdate = func(s StoredSecret) {
		if raced || s.Name != "s2" {
			return
		}
		raced = true
		// A user updates s2 between the rotation's read and its write.
		err := c.SealAndWrite(s.Namespace, s.Name, map[string][]byte{"v": []byte("written during rotation")}, func(sd *SealedData) error {
			st.put(s.Namespace, s.Name, sd)
			return nil
		})
		if err != nil {
			t.Error(err)
		}
		want[s.Namespace+"/"+s.Name] = "written during rotation"
	}
	res, err := c.Rotate(context.Background(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !raced {
		t.Fatal("the concurrent write never happened")
	}
	if res.Resealed != 4 {
		t.Fatalf("resealed %d, want 4 (s2 was written by the user with the new key)", res.Resealed)
	}
	if res.Passes != 2 {
		t.Fatalf("%d passes, want 2: the lost write must be checked again", res.Passes)
	}
	checkRotated(t, c, st, want, oldRaw)
}

func TestRotateWaitsForSealAndWriteInFlight(t *testing.T) {
	c, oldRaw := newTestCodec(t)
	st := newMemStore()
	want := seedSecrets(t, c, st, 2)

	sealed := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		// This writer sealed with the old key and is slow to store: the
		// rotation must not look for old-key secrets before it stores.
		done <- c.SealAndWrite("late", "w", map[string][]byte{"v": []byte("late")}, func(s *SealedData) error {
			close(sealed)
			<-release
			st.put("late", "w", s)
			return nil
		})
	}()
	<-sealed
	want["late/w"] = "late"
	rotated := make(chan error, 1)
	go func() {
		_, err := c.Rotate(context.Background(), st, nil)
		rotated <- err
	}()
	// Wait until the rotation queues on the fence (a queued writer makes
	// TryRLock fail), failing if it gets past the writer instead.
	for {
		select {
		case err := <-rotated:
			t.Fatalf("rotation finished while a seal-and-write with the old key was in flight: %v", err)
		default:
		}
		if !c.fence.TryRLock() {
			break
		}
		c.fence.RUnlock()
		runtime.Gosched()
	}
	st.mu.Lock()
	lists := st.lists
	st.mu.Unlock()
	if lists != 0 {
		t.Fatal("the rotation listed secrets before the writer in flight stored its secret")
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-rotated; err != nil {
		t.Fatal(err)
	}
	checkRotated(t, c, st, want, oldRaw)
}

func TestRotateToleratesSecretsDeletedMeanwhile(t *testing.T) {
	c, oldRaw := newTestCodec(t)
	st := newMemStore()
	want := seedSecrets(t, c, st, 4)
	st.beforeUpdate = func(s StoredSecret) {
		if s.Name == "s1" {
			st.mu.Lock()
			delete(st.items, s.Namespace+"/"+s.Name)
			st.mu.Unlock()
			delete(want, s.Namespace+"/"+s.Name)
		}
	}
	if _, err := c.Rotate(context.Background(), st, nil); err != nil {
		t.Fatal(err)
	}
	checkRotated(t, c, st, want, oldRaw)
}

func TestRotateStopsBeforeRetiringWhenASecretCannotBeOpened(t *testing.T) {
	c, _ := newTestCodec(t)
	st := newMemStore()
	seedSecrets(t, c, st, 2)
	stranger, _ := newTestCodec(t)
	st.put("x", "foreign", mustSeal(t, stranger, "x", "foreign", map[string][]byte{"v": []byte("?")}))

	_, err := c.Rotate(context.Background(), st, nil)
	if !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), "x/foreign") {
		t.Fatalf("got %v, want ErrUnknownKey naming x/foreign", err)
	}
	if ids := c.Keyring().IDs(); len(ids) != 2 {
		t.Fatalf("keyring %v: the old key was retired although the rotation failed", ids)
	}
	// Once the operator removes the secret, running again finishes.
	st.mu.Lock()
	delete(st.items, "x/foreign")
	st.mu.Unlock()
	if _, err := c.Rotate(context.Background(), st, nil); err != nil {
		t.Fatal(err)
	}
	if ids := c.Keyring().IDs(); len(ids) != 1 {
		t.Fatalf("keyring %v after finishing", ids)
	}
}

func TestRotateGivesUpWhenWritersKeepRestoringOldSeals(t *testing.T) {
	c, oldRaw := newTestCodec(t)
	oldOnly, _ := NewKeyring(oldRaw)
	oldCodec := NewCodec(oldOnly)
	st := newMemStore()
	seedSecrets(t, c, st, 1)
	// A misbehaving writer (another server that never got the new key)
	// rewrites the secret under the old key before every update.
	st.beforeUpdate = func(s StoredSecret) {
		st.put(s.Namespace, s.Name, mustSeal(t, oldCodec, s.Namespace, s.Name, map[string][]byte{"v": []byte("x")}))
	}
	res, err := c.Rotate(context.Background(), st, nil)
	if !errors.Is(err, v1.ErrConflict) {
		t.Fatalf("got %v, want ErrConflict", err)
	}
	if res.Passes != maxPasses {
		t.Fatalf("%d passes, want %d", res.Passes, maxPasses)
	}
	if ids := c.Keyring().IDs(); len(ids) != 2 {
		t.Fatalf("keyring %v: the old key was retired while secrets still use it", ids)
	}
}

func TestRotateWithKeysFromTheEnvironment(t *testing.T) {
	k1, _ := GenerateKey()
	k2, _ := GenerateKey()
	t.Run("a single key cannot be rotated and the error says how", func(t *testing.T) {
		t.Setenv(EnvMasterKey, EncodeKey(k1))
		kr, err := LoadKeyring(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		_, err = NewCodec(kr).Rotate(context.Background(), newMemStore(), nil)
		if !errors.Is(err, v1.ErrUnprocessable) || !strings.Contains(err.Error(), "NEW,OLD") {
			t.Fatalf("got %v", err)
		}
		if ids := kr.IDs(); len(ids) != 1 || ids[0] != KeyID(k1) {
			t.Fatalf("keyring changed: %v", ids)
		}
	})
	t.Run("new key first moves secrets onto it and drops the old from memory", func(t *testing.T) {
		old, _ := NewKeyring(k1)
		st := newMemStore()
		want := seedSecrets(t, NewCodec(old), st, 6)
		t.Setenv(EnvMasterKey, EncodeKey(k2)+","+EncodeKey(k1))
		dir := t.TempDir()
		kr, err := LoadKeyring(dir)
		if err != nil {
			t.Fatal(err)
		}
		c := NewCodec(kr)
		res, err := c.Rotate(context.Background(), st, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.KeyID != KeyID(k2) || res.Resealed != 6 || len(res.Retired) != 1 || res.Retired[0] != KeyID(k1) {
			t.Fatalf("result %+v", res)
		}
		checkRotated(t, c, st, want, k1)
		if _, err := os.Stat(KeyFile(dir)); !errors.Is(err, os.ErrNotExist) {
			t.Fatal("rotation of environment keys wrote a key file")
		}
	})
}

func TestRotateStopsWhenTheContextEnds(t *testing.T) {
	c, _ := newTestCodec(t)
	st := newMemStore()
	seedSecrets(t, c, st, 3)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Rotate(ctx, st, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	if ids := c.Keyring().IDs(); len(ids) != 2 {
		t.Fatalf("keyring %v: retired keys although nothing was resealed", ids)
	}
}

// A master key kept on a volume of its own and linked into the data
// directory stays there through a rotation: the link's target gets the
// new key. Before, the link was replaced by a file in the data directory,
// and the operator's file kept only the key the rotation had retired.
// A link that leads nowhere is refused rather than taken for a first start.
func TestRotateKeepsALinkedKeyFileLinked(t *testing.T) {
	vault := filepath.Join(t.TempDir(), "master.key")
	dataDir := t.TempDir()
	path := KeyFile(dataDir)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(vault, path); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeyring(dataDir); err == nil || !strings.Contains(err.Error(), "volume mounted") {
		t.Fatalf("a link to a missing key: %v; want an error saying so", err)
	}
	if fi, err := os.Lstat(path); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link to a missing key was replaced (%v)", err)
	}

	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vault, []byte(EncodeKey(k)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kr, err := LoadKeyring(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	c := NewCodec(kr)
	st := newMemStore()
	s, err := c.Seal("ns", "db", map[string][]byte{"pw": []byte("hunter2")})
	if err != nil {
		t.Fatal(err)
	}
	st.put("ns", "db", s)
	res, err := c.Rotate(context.Background(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(path); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the rotation replaced the link %s with a file (%v)", path, err)
	}
	b, err := os.ReadFile(vault)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := ParseKeys(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if got := KeyID(keys[0]); got != res.KeyID {
		t.Errorf("the linked key file seals with %s; the rotation sealed every secret with %s", got, res.KeyID)
	}
}
