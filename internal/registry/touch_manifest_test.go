package registry

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// A manifest PUT records the manifest and the blobs it references for
// the collector only once the engine has stored it. It used to record
// them before the engine checked the manifest: a refused PUT could name
// any number of made-up digests, which filled the touch set, and past
// its limit every blob counts as touched, so gc freed nothing.
func TestManifestPUTRecordsItsBlobsOnlyOnceStored(t *testing.T) {
	config := []byte(`{"architecture":"amd64","os":"linux"}`)
	layers := [][]byte{[]byte("layer one"), []byte("layer two")}
	blobBytes := int64(len(config) + len(layers[0]) + len(layers[1]))
	for _, tc := range []struct {
		name     string
		upload   bool  // upload the config and layers first
		quota    int64 // of namespace team; 0: none
		status   int
		recorded bool
	}{
		{name: "refused: its blobs were never uploaded", status: http.StatusBadRequest},
		{name: "refused: past the quota", upload: true, quota: blobBytes, status: http.StatusForbidden},
		{name: "stored", upload: true, status: http.StatusCreated, recorded: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTestRegistry(t, func(c *Config) {
				c.StorageQuota = func(context.Context, string) (int64, error) { return tc.quota, nil }
			})
			if tc.upload {
				for _, b := range append([][]byte{config}, layers...) {
					tr.uploadBlob(t, "team/app", adminToken, b)
				}
			}
			// Forget what the uploads recorded: only the PUT's records
			// count here.
			tr.touches.prune(time.Now().Add(time.Hour))
			man := manifestJSON(t, config, layers...)
			resp, body := tr.putManifest(t, "team/app", "v1", adminToken, man)
			if resp.StatusCode != tc.status {
				t.Fatalf("PUT: %d %s, want %d", resp.StatusCode, body, tc.status)
			}
			named := []digest.Digest{digest.FromBytes(man), digest.FromBytes(config)}
			for _, l := range layers {
				named = append(named, digest.FromBytes(l))
			}
			for _, d := range named {
				if got := tr.touches.recorded(d); got != tc.recorded {
					t.Errorf("%s recorded in the touch set: %v, want %v", d, got, tc.recorded)
				}
			}
		})
	}
}
