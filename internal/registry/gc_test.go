package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/opencontainers/go-digest"
)

// age makes every stored blob look written two hours ago and forgets all
// touches, as if the registry had restarted long after the pushes.
func (tr *testRegistry) age(t *testing.T) {
	t.Helper()
	old := time.Now().Add(-2 * time.Hour)
	root := filepath.Join(tr.dir, "storage/docker/registry/v2/blobs")
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() {
			return os.Chtimes(p, old, old)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	tr.touches.prune(time.Now().Add(time.Hour))
}

func (tr *testRegistry) blobStored(t *testing.T, d digest.Digest) bool {
	t.Helper()
	_, err := os.Stat(filepath.Join(tr.dir, "storage/docker/registry/v2/blobs", string(d.Algorithm()), d.Encoded()[:2], d.Encoded(), "data"))
	return err == nil
}

func (tr *testRegistry) gc(t *testing.T) GCResult {
	t.Helper()
	res, err := tr.GC(context.Background())
	if err != nil {
		t.Fatalf("GC: %v", err)
	}
	return res
}

func layerDigests(t *testing.T, img ggcr.Image) []digest.Digest {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out []digest.Digest
	for _, l := range ls {
		d, _ := l.Digest()
		out = append(out, digest.Digest(d.String()))
	}
	return out
}

func TestGCSweepRules(t *testing.T) {
	t.Run("blobs of a deleted image are removed and unlinked", func(t *testing.T) {
		tr := newTestRegistry(t, nil)
		img := mustRandom(t)
		tr.push(t, img, "team/app:v1", adminToken)
		d, _ := img.Digest()
		resp, body := tr.do(t, "DELETE", "/v2/team/app/manifests/"+d.String(), adminToken, nil, nil)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("delete: %d %s", resp.StatusCode, body)
		}
		tr.age(t)
		res := tr.gc(t)
		for _, l := range layerDigests(t, img) {
			if tr.blobStored(t, l) {
				t.Errorf("layer %s survived", l)
			}
		}
		// Two layers, the config and the manifest itself.
		if res.BlobsDeleted != 4 || res.BytesFreed == 0 || res.LinksRemoved != 3 {
			t.Errorf("result %+v", res)
		}
		if resp, _ := tr.do(t, "HEAD", "/v2/team/app/blobs/"+layerDigests(t, img)[0].String(), adminToken, nil, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("deleted layer still served: %d", resp.StatusCode)
		}
	})
	t.Run("recently written blobs are kept within the grace period", func(t *testing.T) {
		tr := newTestRegistry(t, nil)
		orphan := tr.uploadBlob(t, "team/app", adminToken, []byte("uploaded, manifest still to come"))
		tr.touches.prune(time.Now().Add(time.Hour)) // only the file time protects it now
		if res := tr.gc(t); res.BlobsDeleted != 0 || res.BlobsInFlight != 1 || !tr.blobStored(t, orphan) {
			t.Errorf("result %+v", res)
		}
		tr.age(t)
		if res := tr.gc(t); res.BlobsDeleted != 1 || tr.blobStored(t, orphan) {
			t.Errorf("after the grace period: %+v", res)
		}
	})
	t.Run("a blob a client found with HEAD is kept", func(t *testing.T) {
		tr := newTestRegistry(t, nil)
		orphan := tr.uploadBlob(t, "team/app", adminToken, []byte("old layer"))
		tr.age(t)
		if resp, _ := tr.do(t, "HEAD", "/v2/team/app/blobs/"+orphan.String(), adminToken, nil, nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("HEAD: %d", resp.StatusCode)
		}
		if res := tr.gc(t); res.BlobsDeleted != 0 || !tr.blobStored(t, orphan) {
			t.Errorf("result %+v", res)
		}
	})
	t.Run("untagged manifests and what they reference are kept", func(t *testing.T) {
		tr := newTestRegistry(t, nil)
		img := mustRandom(t)
		d, _ := img.Digest()
		tr.push(t, img, "team/app@"+d.String(), adminToken)
		tr.age(t)
		if res := tr.gc(t); res.BlobsDeleted != 0 || res.Manifests != 1 || res.BlobsMarked < 4 {
			t.Errorf("result %+v", res)
		}
		if _, err := remote.Image(tr.ref(t, "team/app@"+d.String()), basic(adminToken)); err != nil {
			t.Error(err)
		}
	})
	t.Run("blobs referenced under sha512 are kept", func(t *testing.T) {
		tr := newTestRegistry(t, nil)
		config := []byte(`{"architecture":"amd64","os":"linux"}`)
		d512 := digest.SHA512.FromBytes(config)
		resp, body := tr.do(t, "POST", "/v2/team/app/blobs/uploads/?digest="+d512.String(), adminToken, bytes.NewReader(config),
			map[string]string{"Content-Type": "application/octet-stream"})
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("upload: %d %s", resp.StatusCode, body)
		}
		man := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
			`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[]}`, d512, len(config)))
		if resp, body := tr.putManifest(t, "team/app", "v1", adminToken, man); resp.StatusCode != http.StatusCreated {
			t.Fatalf("manifest: %d %s", resp.StatusCode, body)
		}
		tr.age(t)
		if res := tr.gc(t); res.BlobsDeleted != 0 || !tr.blobStored(t, digest.FromBytes(config)) {
			t.Errorf("result %+v", res)
		}
	})
}

// TestGCDuringConcurrentPushesLosesNothingReferenced pushes images from
// several clients while the collector runs in a loop. Some pushes reuse
// layers of deleted images (garbage the collector wants) after finding
// them with HEAD. Every push must succeed and every pushed image must
// stay whole; garbage nobody reused must go.
func TestGCDuringConcurrentPushesLosesNothingReferenced(t *testing.T) {
	if testing.Short() {
		t.Skip("pushes many images")
	}
	tr := newTestRegistry(t, func(c *Config) { c.GCGrace = 30 * time.Second })

	// Garbage: images pushed and deleted, their blobs aged.
	var garbage []ggcr.Image
	for i := range 6 {
		img := mustRandom(t)
		ref := fmt.Sprintf("team/old%d:v1", i)
		tr.push(t, img, ref, adminToken)
		d, _ := img.Digest()
		if resp, body := tr.do(t, "DELETE", fmt.Sprintf("/v2/team/old%d/manifests/%s", i, d), adminToken, nil, nil); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("delete: %d %s", resp.StatusCode, body)
		}
		garbage = append(garbage, img)
	}
	tr.age(t)
	// Pushes reuse the first layer of garbage images 0..2; 3..5 stay
	// garbage.
	reused := map[digest.Digest]bool{}
	var reusable []ggcr.Layer
	for _, g := range garbage[:3] {
		ls, _ := g.Layers()
		reusable = append(reusable, ls[0])
		d, _ := ls[0].Digest()
		reused[digest.Digest(d.String())] = true
	}

	const pushers, perPusher = 4, 8
	type pushed struct {
		ref string
		img ggcr.Image
	}
	var (
		mu     sync.Mutex
		images []pushed
		wg     sync.WaitGroup
	)
	stop := make(chan struct{})
	gcRuns := 0
	var gcErr error
	gcDone := make(chan struct{})
	go func() {
		defer close(gcDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := tr.GC(context.Background()); err != nil {
				gcErr = err
				return
			}
			gcRuns++
		}
	}()
	errs := make(chan error, pushers*perPusher)
	for p := range pushers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perPusher {
				img, err := random.Image(32<<10, 3)
				if err != nil {
					errs <- err
					return
				}
				if i%2 == 0 {
					img, err = mutate.AppendLayers(img, reusable[(p+i)%len(reusable)])
					if err != nil {
						errs <- err
						return
					}
				}
				ref := fmt.Sprintf("team/p%d:i%d", p, i)
				nref, err := name.ParseReference(tr.host+"/"+ref, name.Insecure)
				if err != nil {
					errs <- err
					return
				}
				if err := remote.Write(nref, img, basic(adminToken)); err != nil {
					errs <- fmt.Errorf("push %s: %w", ref, err)
					continue
				}
				mu.Lock()
				images = append(images, pushed{ref, img})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-gcDone
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if gcErr != nil {
		t.Fatalf("GC: %v", gcErr)
	}
	if gcRuns < 3 {
		t.Errorf("only %d collections ran during the pushes", gcRuns)
	}
	final := tr.gc(t)
	t.Logf("%d pushes, %d collections during them; final: %+v", len(images), gcRuns, final)

	for _, p := range images {
		got, err := remote.Image(tr.ref(t, p.ref), basic(adminToken))
		if err != nil {
			t.Errorf("pull %s: %v", p.ref, err)
			continue
		}
		if err := validate.Image(got); err != nil {
			t.Errorf("%s is not whole after GC: %v", p.ref, err)
		}
	}
	for _, g := range garbage {
		for _, l := range layerDigests(t, g) {
			if got := tr.blobStored(t, l); got != reused[l] {
				t.Errorf("garbage layer %s stored=%v, want %v (reused=%v)", l, got, reused[l], reused[l])
			}
		}
	}
}

// The API answers a collection with camelCase keys, as every other API
// answer, and its time in seconds; it answered Go's field names and
// nanoseconds (review helper-166).
func TestGCResultJSON(t *testing.T) {
	b, err := json.Marshal(GCResult{BytesFreed: 5, BlobsDeleted: 2, Duration: 1500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["bytesFreed"] != 5.0 || m["blobsDeleted"] != 2.0 || m["seconds"] != 1.5 || m["Duration"] != nil || m["BytesFreed"] != nil {
		t.Errorf("GCResult as JSON: %s", b)
	}
}
