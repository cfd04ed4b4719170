package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestRepositoryNamesAreValidated(t *testing.T) {
	tr := newTestRegistry(t, nil)
	tests := []struct{ name, path string }{
		{"upper case is refused", "/v2/Team/App/tags/list"},
		{"a dot-dot component is refused", "/v2/team/../app/tags/list"},
		{"a dot-dot inside a component is refused", "/v2/team/a..b/tags/list"},
		{"a name without a namespace is refused", "/v2/app/tags/list"},
		{"a namespace that is not a DNS label is refused", "/v2/te_am/app/tags/list"},
		{"a mount source with upper case is refused", "/v2/team/app/blobs/uploads/?from=Other/App&mount=" + digest.FromString("x").String()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", tr.srv.URL, nil)
			req.URL.Path, req.URL.RawQuery, _ = strings.Cut(tt.path, "?")
			if strings.Contains(tt.path, "uploads") {
				req.Method = "POST"
			}
			req.SetBasicAuth("x", adminToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var buf bytes.Buffer
			_, _ = buf.ReadFrom(resp.Body)
			wantError(t, resp, buf.Bytes(), http.StatusBadRequest, codeNameInvalid)
		})
	}
	t.Run("a valid name is served", func(t *testing.T) {
		resp, body := tr.do(t, "GET", "/v2/team/sub.dir/app-1/tags/list", adminToken, nil, nil)
		wantError(t, resp, body, http.StatusNotFound, "NAME_UNKNOWN")
	})
}

func TestWrongDigestsAreRefused(t *testing.T) {
	tr := newTestRegistry(t, nil)
	t.Run("a blob upload whose content does not match its digest", func(t *testing.T) {
		resp, body := tr.do(t, "POST", "/v2/team/app/blobs/uploads/?digest="+digest.FromString("other").String(), adminToken,
			strings.NewReader("content"), map[string]string{"Content-Type": "application/octet-stream"})
		wantError(t, resp, body, http.StatusBadRequest, codeDigestInvalid)
	})
	t.Run("a manifest put under another digest", func(t *testing.T) {
		config := []byte(`{}`)
		tr.uploadBlob(t, "team/app", adminToken, config)
		man := manifestJSON(t, config)
		resp, body := tr.putManifest(t, "team/app", digest.FromString("other").String(), adminToken, man)
		wantError(t, resp, body, http.StatusBadRequest, codeDigestInvalid)
	})
	t.Run("a manifest reference that is no digest", func(t *testing.T) {
		resp, body := tr.putManifest(t, "team/app", "sha256:baddigest", adminToken, []byte("{}"))
		wantError(t, resp, body, http.StatusBadRequest, codeDigestInvalid)
	})
}

func TestManifestSizeLimit(t *testing.T) {
	tr := newTestRegistry(t, nil)
	config := []byte(`{"architecture":"amd64","os":"linux"}`)
	tr.uploadBlob(t, "team/big", adminToken, config)
	// padded returns a valid manifest of exactly size bytes.
	padded := func(size int) []byte {
		base := manifestWith(t, map[string]any{"annotations": map[string]string{"pad": ""}}, config)
		pad := strings.Repeat("x", size-len(base))
		return manifestWith(t, map[string]any{"annotations": map[string]string{"pad": pad}}, config)
	}
	t.Run("a manifest of exactly 4 MiB is accepted", func(t *testing.T) {
		man := padded(4 << 20)
		if len(man) != 4<<20 {
			t.Fatalf("built %d bytes", len(man))
		}
		resp, body := tr.putManifest(t, "team/big", "limit", adminToken, man)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
	t.Run("a manifest one byte over 4 MiB is refused with 413", func(t *testing.T) {
		resp, body := tr.putManifest(t, "team/big", "over", adminToken, padded(4<<20+1))
		e := wantError(t, resp, body, http.StatusRequestEntityTooLarge, codeManifestInvalid)
		if !strings.Contains(e.Message, "4194304") {
			t.Errorf("message %q does not state the limit", e.Message)
		}
		resp, _ = tr.do(t, "GET", "/v2/team/big/manifests/over", adminToken, nil, nil)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("refused manifest is visible: %d", resp.StatusCode)
		}
	})
	t.Run("a lower configured limit applies", func(t *testing.T) {
		small := newTestRegistry(t, func(c *Config) { c.MaxManifestSize = 1024 })
		small.uploadBlob(t, "team/big", adminToken, config)
		resp, body := small.putManifest(t, "team/big", "v1", adminToken, padded(1025))
		wantError(t, resp, body, http.StatusRequestEntityTooLarge, codeManifestInvalid)
	})
}

func TestFailedUploadsLeaveNothingVisible(t *testing.T) {
	tr := newTestRegistry(t, nil)
	content := bytes.Repeat([]byte("data"), 4096)
	d := digest.FromBytes(content)

	startUpload := func(t *testing.T) string {
		t.Helper()
		resp, body := tr.do(t, "POST", "/v2/team/fail/blobs/uploads/", adminToken, nil, nil)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("start: %d %s", resp.StatusCode, body)
		}
		loc := strings.TrimPrefix(resp.Header.Get("Location"), tr.srv.URL)
		resp, body = tr.do(t, "PATCH", loc, adminToken, bytes.NewReader(content[:8000]),
			map[string]string{"Content-Type": "application/octet-stream"})
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("patch: %d %s", resp.StatusCode, body)
		}
		return strings.TrimPrefix(resp.Header.Get("Location"), tr.srv.URL)
	}
	nothingVisible := func(t *testing.T, loc string) {
		t.Helper()
		if resp, _ := tr.do(t, "HEAD", "/v2/team/fail/blobs/"+d.String(), adminToken, nil, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("blob HEAD: %d, want 404", resp.StatusCode)
		}
		if resp, _ := tr.do(t, "GET", loc, adminToken, nil, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("upload status: %d, want 404", resp.StatusCode)
		}
		_, body := tr.do(t, "GET", "/v2/_catalog", adminToken, nil, nil)
		if strings.Contains(string(body), "team/fail") {
			t.Errorf("catalog lists the repository: %s", body)
		}
		uploads := filepath.Join(tr.dir, "storage/docker/registry/v2/repositories/team/fail/_uploads")
		ents, err := os.ReadDir(uploads)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		if len(ents) != 0 {
			t.Errorf("upload data left behind: %v", ents)
		}
		var blobs []string
		_ = filepath.WalkDir(filepath.Join(tr.dir, "storage/docker/registry/v2/blobs"), func(p string, e fs.DirEntry, err error) error {
			if err == nil && !e.IsDir() {
				blobs = append(blobs, p)
			}
			return nil
		})
		if len(blobs) != 0 {
			t.Errorf("blobs stored: %v", blobs)
		}
	}
	t.Run("an upload finished with the wrong digest", func(t *testing.T) {
		loc := startUpload(t)
		sep := "?"
		if strings.Contains(loc, "?") {
			sep = "&"
		}
		resp, body := tr.do(t, "PUT", loc+sep+"digest="+digest.FromString("wrong").String(), adminToken,
			bytes.NewReader(content[8000:]), map[string]string{"Content-Type": "application/octet-stream"})
		wantError(t, resp, body, http.StatusBadRequest, codeDigestInvalid)
		nothingVisible(t, loc)
	})
	t.Run("a final chunk out of order is refused and the upload goes on", func(t *testing.T) {
		loc := startUpload(t)
		sep := "?"
		if strings.Contains(loc, "?") {
			sep = "&"
		}
		put := loc + sep + "digest=" + d.String()
		resp, body := tr.do(t, "PUT", put, adminToken, bytes.NewReader(content[9000:]),
			map[string]string{"Content-Type": "application/octet-stream", "Content-Range": fmt.Sprintf("9000-%d", len(content)-1)})
		if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
			t.Fatalf("out-of-order chunk: %d %s", resp.StatusCode, body)
		}
		if resp, _ := tr.do(t, "GET", loc, adminToken, nil, nil); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("upload status after 416: %d, want 204", resp.StatusCode)
		}
		resp, body = tr.do(t, "PUT", put, adminToken, bytes.NewReader(content[8000:]),
			map[string]string{"Content-Type": "application/octet-stream", "Content-Range": fmt.Sprintf("8000-%d", len(content)-1)})
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("in-order chunk: %d %s", resp.StatusCode, body)
		}
		if resp, _ := tr.do(t, "DELETE", "/v2/team/fail/blobs/"+d.String(), adminToken, nil, nil); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("cleanup: %d", resp.StatusCode)
		}
		tr.age(t)
		tr.gc(t)
	})
	t.Run("an upload cancelled by the client", func(t *testing.T) {
		loc := startUpload(t)
		resp, body := tr.do(t, "DELETE", loc, adminToken, nil, nil)
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("cancel: %d %s", resp.StatusCode, body)
		}
		nothingVisible(t, loc)
	})
	t.Run("an upload in one POST with the wrong digest", func(t *testing.T) {
		resp, body := tr.do(t, "POST", "/v2/team/fail/blobs/uploads/?digest="+digest.FromString("wrong").String(), adminToken,
			bytes.NewReader(content), map[string]string{"Content-Type": "application/octet-stream"})
		wantError(t, resp, body, http.StatusBadRequest, codeDigestInvalid)
		nothingVisible(t, "/v2/team/fail/blobs/uploads/none")
	})
}

func TestReferrers(t *testing.T) {
	tr := newTestRegistry(t, nil)
	config := []byte(`{"architecture":"amd64","os":"linux"}`)
	layer := []byte("layer")
	tr.uploadBlob(t, "team/app", aliceToken, config)
	tr.uploadBlob(t, "team/app", aliceToken, layer)
	subjectMan := manifestJSON(t, config, layer)
	if resp, body := tr.putManifest(t, "team/app", "v1", aliceToken, subjectMan); resp.StatusCode != http.StatusCreated {
		t.Fatalf("subject: %d %s", resp.StatusCode, body)
	}
	subject := digest.FromBytes(subjectMan)

	empty := []byte("{}")
	tr.uploadBlob(t, "team/app", aliceToken, empty)
	artifact := func(artifactType, note string) []byte {
		return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":%q,`+
			`"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"%s","size":2},"layers":[],`+
			`"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%d},"annotations":{"note":%q}}`,
			artifactType, digest.FromBytes(empty), subject, len(subjectMan), note))
	}
	sig, sbom := artifact("application/vnd.dev.cosign.signature", "sig"), artifact("application/spdx+json", "sbom")
	for _, a := range [][]byte{sig, sbom} {
		resp, body := tr.putManifest(t, "team/app", digest.FromBytes(a).String(), aliceToken, a)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("artifact: %d %s", resp.StatusCode, body)
		}
		if resp.Header.Get("OCI-Subject") != subject.String() {
			t.Errorf("OCI-Subject = %q", resp.Header.Get("OCI-Subject"))
		}
	}
	list := func(t *testing.T, query string) (*http.Response, ocispec.Index) {
		t.Helper()
		resp, body := tr.do(t, "GET", "/v2/team/app/referrers/"+subject.String()+query, bobToken, nil, nil)
		var idx ocispec.Index
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &idx) != nil {
			t.Fatalf("referrers: %d %s", resp.StatusCode, body)
		}
		if resp.Header.Get("Content-Type") != ocispec.MediaTypeImageIndex || idx.MediaType != ocispec.MediaTypeImageIndex {
			t.Errorf("not an image index: %s", resp.Header.Get("Content-Type"))
		}
		return resp, idx
	}
	t.Run("all referrers are listed with their descriptors", func(t *testing.T) {
		_, idx := list(t, "")
		if len(idx.Manifests) != 2 {
			t.Fatalf("manifests %+v", idx.Manifests)
		}
		for _, d := range idx.Manifests {
			if d.Digest != digest.FromBytes(sig) && d.Digest != digest.FromBytes(sbom) {
				t.Errorf("unexpected %s", d.Digest)
			}
			if d.ArtifactType == "" || d.Annotations["note"] == "" || d.Size == 0 || d.MediaType != ocispec.MediaTypeImageManifest {
				t.Errorf("incomplete descriptor %+v", d)
			}
		}
	})
	t.Run("artifactType filters and says so", func(t *testing.T) {
		resp, idx := list(t, "?artifactType=application/spdx%2Bjson")
		if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != digest.FromBytes(sbom) {
			t.Fatalf("manifests %+v", idx.Manifests)
		}
		if resp.Header.Get("OCI-Filters-Applied") != "artifactType" {
			t.Errorf("OCI-Filters-Applied = %q", resp.Header.Get("OCI-Filters-Applied"))
		}
	})
	t.Run("an unknown subject has an empty list", func(t *testing.T) {
		resp, body := tr.do(t, "GET", "/v2/team/app/referrers/"+digest.FromString("none").String(), bobToken, nil, nil)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"manifests":[]`) {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
	t.Run("a deleted referrer disappears and GC prunes its entry", func(t *testing.T) {
		resp, body := tr.do(t, "DELETE", "/v2/team/app/manifests/"+digest.FromBytes(sig).String(), aliceToken, nil, nil)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("delete: %d %s", resp.StatusCode, body)
		}
		_, idx := list(t, "")
		if len(idx.Manifests) != 1 {
			t.Fatalf("manifests %+v", idx.Manifests)
		}
		res, err := tr.GC(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if res.ReferrersPruned != 1 {
			t.Errorf("pruned %d entries, want 1", res.ReferrersPruned)
		}
	})
	t.Run("reading referrers needs pull", func(t *testing.T) {
		other := newTestRegistry(t, nil)
		other.auth.grants["carol"] = nil
		other.auth.tokens["tok-carol"] = Identity{User: "carol"}
		resp, body := other.do(t, "GET", "/v2/team/app/referrers/"+subject.String(), "tok-carol", nil, nil)
		wantError(t, resp, body, http.StatusForbidden, codeDenied)
	})
}

func TestEventsAndDeleteProtection(t *testing.T) {
	var (
		mu     sync.Mutex
		events []Event
	)
	tr := newTestRegistry(t, func(c *Config) {
		c.OnEvent = func(ev Event) { mu.Lock(); events = append(events, ev); mu.Unlock() }
		c.CanDelete = func(_ context.Context, repo, ref string) error {
			if repo == "team/app" && ref == "v1" {
				return errors.New("App team/web runs it")
			}
			return nil
		}
	})
	img := mustRandom(t)
	tr.push(t, img, "team/app:v1", aliceToken)
	tr.push(t, img, "team/app:v2", aliceToken)
	d, _ := img.Digest()

	t.Run("deleting a tag in use is refused with the reason", func(t *testing.T) {
		resp, body := tr.do(t, "DELETE", "/v2/team/app/manifests/v1", aliceToken, nil, nil)
		e := wantError(t, resp, body, http.StatusConflict, codeDenied)
		if !strings.Contains(e.Message, "App team/web runs it") || !strings.Contains(e.Message, "force") {
			t.Errorf("message %q", e.Message)
		}
		if resp, _ := tr.do(t, "HEAD", "/v2/team/app/manifests/v1", aliceToken, nil, map[string]string{"Accept": ocispec.MediaTypeImageManifest}); resp.StatusCode != http.StatusOK {
			t.Errorf("tag gone after a refused delete: %d", resp.StatusCode)
		}
	})
	t.Run("deleting a tag nobody uses works", func(t *testing.T) {
		resp, body := tr.do(t, "DELETE", "/v2/team/app/manifests/v2", aliceToken, nil, nil)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
	t.Run("force overrides the check", func(t *testing.T) {
		resp, body := tr.do(t, "DELETE", "/v2/team/app/manifests/v1?force=true", aliceToken, nil, nil)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
	t.Run("pushes and deletes were reported in order", func(t *testing.T) {
		deadline := time.Now().Add(5 * time.Second)
		for {
			mu.Lock()
			n := len(events)
			mu.Unlock()
			if n >= 4 || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		mu.Lock()
		defer mu.Unlock()
		want := []Event{
			{Action: ActionPush, Repository: "team/app", Namespace: "team", Tag: "v1", Digest: d.String(), User: "alice"},
			{Action: ActionPush, Repository: "team/app", Namespace: "team", Tag: "v2", Digest: d.String(), User: "alice"},
			{Action: ActionDelete, Repository: "team/app", Namespace: "team", Tag: "v2", User: "alice"},
			{Action: ActionDelete, Repository: "team/app", Namespace: "team", Tag: "v1", User: "alice"},
		}
		if len(events) != len(want) {
			t.Fatalf("events %+v", events)
		}
		for i, w := range want {
			g := events[i]
			if g.Action != w.Action || g.Repository != w.Repository || g.Namespace != w.Namespace || g.Tag != w.Tag || g.Digest != w.Digest || g.User != w.User || g.Time.IsZero() {
				t.Errorf("event %d = %+v, want %+v", i, g, w)
			}
		}
	})
}

func TestManifestsUnderSHA512(t *testing.T) {
	tr := newTestRegistry(t, nil)
	config := []byte(`{"architecture":"amd64","os":"linux"}`)
	tr.uploadBlob(t, "team/app", adminToken, config)
	man := manifestJSON(t, config)
	d := digest.SHA512.FromBytes(man)
	resp, body := tr.putManifest(t, "team/app", d.String(), adminToken, man)
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Docker-Content-Digest") != d.String() || !strings.HasSuffix(resp.Header.Get("Location"), d.String()) {
		t.Fatalf("put: %d %s %v", resp.StatusCode, body, resp.Header)
	}
	resp, body = tr.do(t, "GET", "/v2/team/app/manifests/"+d.String(), adminToken, nil, map[string]string{"Accept": ocispec.MediaTypeImageManifest})
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, man) || resp.Header.Get("Docker-Content-Digest") != d.String() {
		t.Fatalf("get: %d %s", resp.StatusCode, body)
	}
	resp, _ = tr.do(t, "DELETE", "/v2/team/app/manifests/"+d.String(), adminToken, nil, nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	for _, ref := range []string{d.String(), digest.FromBytes(man).String()} {
		if resp, _ := tr.do(t, "GET", "/v2/team/app/manifests/"+ref, adminToken, nil, map[string]string{"Accept": ocispec.MediaTypeImageManifest}); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s still served after delete: %d", ref, resp.StatusCode)
		}
	}
}
