package registry

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// Client mistakes are answered 4xx with a spec error code, not 500
// UNKNOWN: the engine answers these 500, and the front end once passed
// that on.
func TestBadInputGets4xx(t *testing.T) {
	tr := newTestRegistry(t, nil)
	config := []byte(`{}`)
	tr.uploadBlob(t, "team/app", adminToken, config)
	cd := digest.FromBytes(config).String()
	manifest := func(configDigest, layers string, schema int) []byte {
		return []byte(`{"schemaVersion":` + string(rune('0'+schema)) + `,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
			`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + configDigest + `","size":2},"layers":[` + layers + `]}`)
	}
	check := func(what string, resp *http.Response, body []byte) {
		t.Helper()
		if resp.StatusCode < 400 || resp.StatusCode >= 500 || !strings.Contains(string(body), `"code"`) {
			t.Errorf("%s: %d %s; want 4xx with a spec error", what, resp.StatusCode, body)
		}
	}
	resp, body := tr.putManifest(t, "team/app", "a", adminToken, manifest("sha256:zz", "", 2))
	check("manifest whose config digest is malformed", resp, body)
	resp, body = tr.putManifest(t, "team/app", "b", adminToken, manifest(cd, "", 3))
	check("manifest with schemaVersion 3", resp, body)
	resp, body = tr.putManifest(t, "team/app", "c", adminToken, manifest(cd,
		`{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar","digest":"`+digest.FromString("x").String()+`","size":1,"urls":["ftp://example.com/x"]}`, 2))
	check("manifest with an ftp:// layer URL", resp, body)
	for _, b := range []string{`{}`, `null`, `{"mediaType":"application/vnd.oci.image.manifest.v1+json"}`} {
		resp, body = tr.do(t, "PUT", "/v2/team/app/manifests/d", adminToken, strings.NewReader(b), map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
		check("manifest "+b+" (no schemaVersion)", resp, body)
	}
	resp, body = tr.do(t, "GET", "/v2/team/app/blobs/notadigest", adminToken, nil, nil)
	check("blob named by something that is not a digest", resp, body)
	for _, r := range []string{"bytes=500-900", "garbage"} {
		resp, body = tr.do(t, "GET", "/v2/team/app/blobs/"+cd, adminToken, nil, map[string]string{"Range": r})
		check("blob with Range "+r, resp, body)
		if r == "bytes=500-900" && resp.Header.Get("Content-Range") != "bytes */2" {
			t.Errorf("Range %s: Content-Range %q, want bytes */2", r, resp.Header.Get("Content-Range"))
		}
	}
	resp, body = tr.do(t, "GET", "/v2/team/app/blobs/"+cd, adminToken, nil, map[string]string{"Range": "bytes=1-1"})
	if resp.StatusCode != http.StatusPartialContent || string(body) != "}" {
		t.Errorf("a satisfiable Range: %d %q", resp.StatusCode, body)
	}

	resp, body = tr.do(t, "POST", "/v2/team/app/blobs/uploads/", adminToken, nil, nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("start: %d %s", resp.StatusCode, body)
	}
	loc := strings.TrimPrefix(resp.Header.Get("Location"), tr.srv.URL)
	resp, body = tr.do(t, "PATCH", loc, adminToken, bytes.NewReader([]byte("abc")), map[string]string{"Content-Type": "text/plain"})
	check("PATCH with Content-Type text/plain", resp, body)
	resp, body = tr.do(t, "PATCH", loc, adminToken, bytes.NewReader([]byte("abc")), map[string]string{"Content-Range": "bytes=0-2"})
	check("PATCH with a malformed Content-Range", resp, body)
}
