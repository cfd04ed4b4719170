package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/registry/storage"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"
)

// A repository that holds blobs but no manifest yet (a push that
// stopped before its manifest) was not enumerated by the mark, so the
// sweep deleted its blobs but left its links behind. The dangling link
// then made the quota believe the blob was already counted: the same
// blob was re-admitted without any check, past the quota.
func TestGCRemovesTheLinksOfBlobOnlyRepositories(t *testing.T) {
	tr := newTestRegistry(t, func(c *Config) {
		c.StorageQuota = func(_ context.Context, ns string) (int64, error) {
			if ns == "team" {
				return 100, nil
			}
			return 0, nil
		}
	})
	x := bytes.Repeat([]byte{'x'}, 80)
	tr.uploadBlob(t, "team/a", adminToken, x) // 80 of 100, no manifest ever
	tr.age(t)
	res := tr.gc(t)
	dx := digest.FromBytes(x)
	if tr.blobStored(t, dx) {
		t.Fatalf("blob kept: %+v", res)
	}
	link := filepath.Join(tr.dir, "storage", layerLinkPath("team/a", dx))
	if _, err := os.Stat(link); err == nil {
		t.Errorf("GC deleted blob %s but left its link in team/a (LinksRemoved=%d)", dx, res.LinksRemoved)
	}
	// The namespace is empty now: 80 other bytes fit.
	tr.uploadBlob(t, "team/b", adminToken, bytes.Repeat([]byte{'y'}, 80))
	// 80 + 80 > 100: must be refused.
	resp, body := tr.do(t, "POST", "/v2/team/a/blobs/uploads/?digest="+dx.String(), adminToken, bytes.NewReader(x),
		map[string]string{"Content-Type": "application/octet-stream"})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("re-upload of the collected blob past the quota: %d %s; want 403", resp.StatusCode, body)
	}
}

// flakyDriver fails one read of one path, as an EMFILE or EIO would.
type flakyDriver struct {
	storagedriver.StorageDriver
	path string
	left atomic.Int32
}

func (f *flakyDriver) Reader(ctx context.Context, p string, off int64) (io.ReadCloser, error) {
	if p == f.path && f.left.Add(-1) >= 0 {
		return nil, errors.New("open: too many open files")
	}
	return f.StorageDriver.Reader(ctx, p, off)
}

// The mark once took any error reading a manifest for "deleted since it
// was listed": one transient read error on a manifest made the sweep
// delete every blob that manifest references, while the manifest stayed.
// Now such an error stops the collection.
func TestGCStopsOnAManifestReadError(t *testing.T) {
	tr := newTestRegistry(t, nil)
	img := mustRandom(t)
	tr.push(t, img, "team/app:v1", adminToken)
	md, _ := img.Digest()
	fd := &flakyDriver{StorageDriver: tr.driver, path: blobDataPath(digest.Digest(md.String()))}
	fd.left.Store(1)
	ns, err := storage.NewRegistry(context.Background(), fd, storage.EnableDelete)
	if err != nil {
		t.Fatal(err)
	}
	tr.ns = ns
	tr.age(t)
	res, err := tr.GC(context.Background())
	lost := 0
	for _, l := range layerDigests(t, img) {
		if !tr.blobStored(t, l) {
			lost++
		}
	}
	t.Logf("err %v res %+v left %d", err, res, fd.left.Load())
	if lost > 0 {
		t.Errorf("GC (err %v, %+v) deleted %d layers of team/app:v1, which is still tagged", err, res, lost)
	}
}

// A manifest PUT touches the digests its body names; for a sha512 one the
// blob on disk is the sha256 it links to, which was not touched, and a PUT
// that landed between mark and sweep lost its blob. The link's target is
// touched too now.
func TestGCKeepsTheSHA256BlobOfAManifestPutDuringMark(t *testing.T) {
	tr := newTestRegistry(t, nil)
	config := []byte(`{"architecture":"amd64","os":"linux"}`)
	d512 := digest.SHA512.FromBytes(config)
	resp, body := tr.do(t, "POST", "/v2/team/app/blobs/uploads/?digest="+d512.String(), adminToken, bytes.NewReader(config),
		map[string]string{"Content-Type": "application/octet-stream"})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload: %d %s", resp.StatusCode, body)
	}
	tr.age(t) // uploaded long ago, never referenced yet

	// GC(): barrier, then mark...
	tr.writeMu.Lock()
	start := tr.now()
	tr.writeMu.Unlock()
	cutoff := start.Add(-tr.cfg.GCGrace)
	var res GCResult
	m, err := tr.mark(context.Background(), &res)
	if err != nil {
		t.Fatal(err)
	}
	// ...a push lands during the mark...
	time.Sleep(time.Millisecond)
	man := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[]}`, d512, len(config)))
	if resp, body := tr.putManifest(t, "team/app", "v1", adminToken, man); resp.StatusCode != http.StatusCreated {
		t.Fatalf("manifest: %d %s", resp.StatusCode, body)
	}
	// ...then the sweep.
	victims, err := tr.candidates(context.Background(), m, cutoff, &res)
	if err != nil {
		t.Fatal(err)
	}
	tr.writeMu.Lock()
	err = tr.sweep(context.Background(), m, cutoff, victims, &res)
	tr.writeMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if !tr.blobStored(t, digest.FromBytes(config)) {
		t.Errorf("config of team/app:v1 (pushed during the mark) was deleted: %+v", res)
	}
}
