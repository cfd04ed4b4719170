package registry

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The quota counts the blobs a namespace's repositories link. DELETE of a
// blob once unlinked it with 202 while a manifest still referenced it:
// gc, marking from the manifest, kept the data on disk, the quota stopped
// counting it, and a namespace could store any amount past its quota by
// pushing, unlinking the layers and pushing again (and its images lost
// their layers for pulls meanwhile). The unlink is now refused while a
// manifest of the repository references the blob.
func TestBlobDeleteRefusedWhileAManifestReferencesIt(t *testing.T) {
	tr := newTestRegistry(t, func(c *Config) {
		c.GCGrace = -1
		c.StorageQuota = func(_ context.Context, ns string) (int64, error) {
			if ns == "team" {
				return 1800, nil
			}
			return 0, nil
		}
	})
	config := []byte(`{"architecture":"amd64","os":"linux"}`)
	layer := bytes.Repeat([]byte{'a'}, 1000)
	tr.uploadBlob(t, "team/app", adminToken, config)
	l := tr.uploadBlob(t, "team/app", adminToken, layer)
	man := manifestJSON(t, config, layer)
	if resp, b := tr.putManifest(t, "team/app", "v1", adminToken, man); resp.StatusCode != http.StatusCreated {
		t.Fatalf("manifest: %d %s", resp.StatusCode, b)
	}

	resp, body := tr.do(t, "DELETE", "/v2/team/app/blobs/"+l.String(), adminToken, nil, nil)
	wantError(t, resp, body, http.StatusConflict, codeDenied)
	if resp, _ := tr.do(t, "GET", "/v2/team/app/blobs/"+l.String(), adminToken, nil, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("layer of v1 after the refused delete: %d, want 200", resp.StatusCode)
	}
	if _, err := tr.GC(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The layer still counts: another 1000 bytes do not fit.
	other := bytes.Repeat([]byte{'b'}, 1000)
	resp, body = tr.do(t, "POST", "/v2/team/app/blobs/uploads/?digest="+digest.FromBytes(other).String(), adminToken, bytes.NewReader(other),
		map[string]string{"Content-Type": "application/octet-stream"})
	wantError(t, resp, body, http.StatusForbidden, codeDenied)

	// Once no manifest references it, the blob can be unlinked.
	if resp, b := tr.do(t, "DELETE", "/v2/team/app/manifests/"+digest.FromBytes(man).String(), adminToken, nil, nil); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("delete manifest: %d %s", resp.StatusCode, b)
	}
	if resp, b := tr.do(t, "DELETE", "/v2/team/app/blobs/"+l.String(), adminToken, nil, nil); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("delete the unreferenced layer: %d %s", resp.StatusCode, b)
	}
}

// A manifest that names its config by sha512 keeps the sha256 link the
// sha512 one resolves through: unlinking either would break its pulls.
func TestBlobDeleteRefusedForTheSHA256OfABlobReferencedBySHA512(t *testing.T) {
	tr := newTestRegistry(t, nil)
	config := []byte(`{"architecture":"amd64","os":"linux"}`)
	d512 := digest.SHA512.FromBytes(config)
	resp, body := tr.do(t, "POST", "/v2/team/app/blobs/uploads/?digest="+d512.String(), adminToken, bytes.NewReader(config),
		map[string]string{"Content-Type": "application/octet-stream"})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload: %d %s", resp.StatusCode, body)
	}
	man := manifestWith(t, map[string]any{"config": ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: d512, Size: int64(len(config))}}, config)
	if resp, body := tr.putManifest(t, "team/app", "v1", adminToken, man); resp.StatusCode != http.StatusCreated {
		t.Fatalf("manifest: %d %s", resp.StatusCode, body)
	}
	for _, d := range []digest.Digest{digest.FromBytes(config), d512} {
		resp, body := tr.do(t, "DELETE", "/v2/team/app/blobs/"+d.String(), adminToken, nil, nil)
		wantError(t, resp, body, http.StatusConflict, codeDenied)
	}
}

// A blob DELETE checks that no manifest of the repository references
// the blob, then unlinks it. A manifest PUT referencing the blob must not
// commit in between, or the stored image points at a blob its repository
// no longer links (its pulls fail, and gc deletes the data). Only a PUT
// to a namespace with a quota used to wait for the delete. The test stops
// the delete between its check and its unlink until the PUT has either
// finished or reached the namespace's lock, which the delete holds.
func TestBlobDeleteAndManifestPUTDoNotInterleave(t *testing.T) {
	for _, tc := range []struct {
		name  string
		quota int64
	}{
		{name: "a namespace without a quota"},
		{name: "a namespace with a quota", quota: 1 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTestRegistry(t, func(c *Config) {
				c.StorageQuota = func(context.Context, string) (int64, error) { return tc.quota, nil }
			})
			config := []byte(`{"architecture":"amd64","os":"linux"}`)
			layer := []byte("the layer to delete")
			tr.uploadBlob(t, "team/app", adminToken, config)
			l := tr.uploadBlob(t, "team/app", adminToken, layer)
			man := manifestJSON(t, config, layer)

			var armed atomic.Bool
			locking := make(chan struct{}, 1) // the PUT is about to take the namespace's lock
			tr.nsLocking = func(ns string) {
				if armed.Load() {
					select {
					case locking <- struct{}{}:
					default:
					}
				}
			}
			putDone := make(chan struct{})
			var putStatus int
			var putBody []byte
			var putErr error
			tr.blobDeleteChecked = func() {
				armed.Store(true)
				go func() {
					defer close(putDone)
					req, err := http.NewRequest("PUT", tr.srv.URL+"/v2/team/app/manifests/v1", bytes.NewReader(man))
					if err != nil {
						putErr = err
						return
					}
					req.SetBasicAuth("someone", adminToken)
					req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						putErr = err
						return
					}
					defer resp.Body.Close()
					putStatus = resp.StatusCode
					putBody, putErr = io.ReadAll(resp.Body)
				}()
				select {
				case <-locking:
				case <-putDone:
				}
			}
			resp, body := tr.do(t, "DELETE", "/v2/team/app/blobs/"+l.String(), adminToken, nil, nil)
			<-putDone
			if putErr != nil {
				t.Fatal(putErr)
			}
			if resp.StatusCode == http.StatusAccepted && putStatus == http.StatusCreated {
				t.Fatalf("the delete unlinked %s (202) while the PUT of a manifest referencing it was stored (201): the image lost its layer", l)
			}
			// The delete held the namespace's lock: it went first, and
			// the PUT found the layer gone.
			if resp.StatusCode != http.StatusAccepted {
				t.Errorf("DELETE: %d %s, want 202", resp.StatusCode, body)
			}
			if putStatus != http.StatusBadRequest || !strings.Contains(string(putBody), "MANIFEST_BLOB_UNKNOWN") {
				t.Errorf("PUT after the delete: %d %s, want 400 MANIFEST_BLOB_UNKNOWN", putStatus, putBody)
			}
		})
	}
}
