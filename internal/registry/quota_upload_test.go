package registry

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// The registryStorage quota used to be checked only when an upload
// completed: its chunks streamed to disk without a limit, and an upload
// the quota refused stayed there, data and all, until the purger took it
// a day later. A chunk that cannot fit is now refused before it streams
// in (one larger than the whole quota: its blob can never be committed),
// and an upload the quota refuses is removed at once.
func TestStorageQuotaBoundsUploadsInProgress(t *testing.T) {
	const limit = 1024 // namespace team's; shared has no quota
	blob := func(c byte, n int) []byte { return bytes.Repeat([]byte{c}, n) }
	for _, tc := range []struct {
		name      string
		repo      string
		patch     []byte
		chunked   bool   // send the PATCH without a Content-Length
		put       []byte // the body of the PUT that completes the upload
		wantPatch int
		wantPut   int    // 0: no PUT is sent
		stored    []byte // a blob team/other holds first (counted in the quota)
	}{
		// A chunk is not refused for the room left: its blob may be one
		// the namespace holds already, which counts nothing (review
		// helper-165: it was refused and the upload deleted).
		{name: "a blob the namespace holds already, in another repository, near the quota", repo: "team/app",
			stored: blob('f', 3*limit/4), patch: blob('f', 3*limit/4), wantPatch: http.StatusAccepted, wantPut: http.StatusCreated},
		{name: "a chunk past the quota is refused before it streams in", repo: "team/app",
			patch: blob('a', 4*limit), wantPatch: http.StatusForbidden},
		{name: "an upload streamed past the quota is removed when its PUT is refused", repo: "team/app",
			patch: blob('b', 4*limit), chunked: true, wantPatch: http.StatusAccepted, wantPut: http.StatusForbidden},
		{name: "a PUT whose body takes the upload past the quota", repo: "team/app",
			patch: blob('c', limit/2), put: blob('c', limit), wantPatch: http.StatusAccepted, wantPut: http.StatusForbidden},
		{name: "within the quota", repo: "team/app",
			patch: blob('d', limit/2), put: blob('d', limit/4), wantPatch: http.StatusAccepted, wantPut: http.StatusCreated},
		{name: "a namespace without a quota", repo: "shared/app",
			patch: blob('e', 4*limit), wantPatch: http.StatusAccepted, wantPut: http.StatusCreated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTestRegistry(t, func(c *Config) {
				c.StorageQuota = func(_ context.Context, ns string) (int64, error) {
					if ns == "team" {
						return limit, nil
					}
					return 0, nil
				}
			})
			if tc.stored != nil {
				resp, body := tr.do(t, "POST", "/v2/team/other/blobs/uploads/?digest="+digest.FromBytes(tc.stored).String(), adminToken,
					bytes.NewReader(tc.stored), map[string]string{"Content-Type": "application/octet-stream"})
				if resp.StatusCode != http.StatusCreated {
					t.Fatalf("pushing the stored blob: %d %s", resp.StatusCode, body)
				}
			}
			resp, body := tr.do(t, "POST", "/v2/"+tc.repo+"/blobs/uploads/", adminToken, nil, nil)
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("POST: %d %s", resp.StatusCode, body)
			}
			loc, err := url.Parse(resp.Header.Get("Location"))
			if err != nil {
				t.Fatal(err)
			}
			id := path.Base(loc.Path)
			uploadDir := filepath.Join(tr.dir, "storage/docker/registry/v2/repositories", tc.repo, "_uploads", id)

			var patchBody io.Reader = bytes.NewReader(tc.patch)
			if tc.chunked {
				patchBody = io.NopCloser(patchBody) // an unknown length: Transfer-Encoding: chunked
			}
			req, err := http.NewRequest("PATCH", tr.srv.URL+loc.RequestURI(), patchBody)
			if err != nil {
				t.Fatal(err)
			}
			req.SetBasicAuth("someone", adminToken)
			req.Header.Set("Content-Type", "application/octet-stream")
			resp, err = http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			refused := resp.StatusCode == http.StatusForbidden
			if resp.StatusCode != tc.wantPatch {
				t.Fatalf("PATCH of %d bytes: %d %s, want %d", len(tc.patch), resp.StatusCode, body, tc.wantPatch)
			}
			if !refused && tc.wantPut != 0 {
				loc, err = url.Parse(resp.Header.Get("Location"))
				if err != nil {
					t.Fatal(err)
				}
				q := loc.Query()
				q.Set("digest", digest.FromBytes(append(append([]byte{}, tc.patch...), tc.put...)).String())
				loc.RawQuery = q.Encode()
				resp, body = tr.do(t, "PUT", loc.RequestURI(), adminToken, bytes.NewReader(tc.put),
					map[string]string{"Content-Type": "application/octet-stream"})
				refused = resp.StatusCode == http.StatusForbidden
				if resp.StatusCode != tc.wantPut {
					t.Fatalf("PUT: %d %s, want %d", resp.StatusCode, body, tc.wantPut)
				}
			}
			if refused {
				// The error of every quota refusal.
				e := wantError(t, resp, body, http.StatusForbidden, codeDenied)
				if !strings.Contains(e.Message, `quota exceeded in namespace "team": registryStorage: used 0 + requested`) {
					t.Errorf("message %q does not name the quota and the numbers", e.Message)
				}
				if d, ok := e.Detail.(map[string]any); !ok || d["limit"] != float64(limit) {
					t.Errorf("detail %#v, want the limit %d", e.Detail, limit)
				}
				if _, err := os.Stat(uploadDir); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("the refused upload is still on disk (%s: %v)", uploadDir, err)
				}
			}
		})
	}
}
