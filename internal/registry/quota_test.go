package registry

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// A namespace's registryStorage quota counts the distinct blobs its
// repositories link, once each, and refuses the blob that would pass it,
// however it arrives: an upload in one request, a chunked upload's last
// PUT, a mount from another namespace.
func TestStorageQuota(t *testing.T) {
	tr := newTestRegistry(t, func(c *Config) {
		c.StorageQuota = func(_ context.Context, ns string) (int64, error) {
			if ns == "team" {
				return 100, nil
			}
			return 0, nil
		}
	})
	blob := func(c byte, n int) []byte { return bytes.Repeat([]byte{c}, n) }
	upload := func(repo string, b []byte) (int, string) {
		t.Helper()
		resp, body := tr.do(t, "POST", "/v2/"+repo+"/blobs/uploads/?digest="+digest.FromBytes(b).String(), adminToken, bytes.NewReader(b),
			map[string]string{"Content-Type": "application/octet-stream"})
		return resp.StatusCode, string(body)
	}
	chunked := func(repo string, b []byte) (int, string) {
		t.Helper()
		resp, body := tr.do(t, "POST", "/v2/"+repo+"/blobs/uploads/", adminToken, nil, nil)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("start: %d %s", resp.StatusCode, body)
		}
		loc := strings.TrimPrefix(resp.Header.Get("Location"), tr.srv.URL)
		resp, body = tr.do(t, "PATCH", loc, adminToken, bytes.NewReader(b), map[string]string{"Content-Type": "application/octet-stream"})
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("patch: %d %s", resp.StatusCode, body)
		}
		loc = strings.TrimPrefix(resp.Header.Get("Location"), tr.srv.URL)
		sep := "?"
		if strings.Contains(loc, "?") {
			sep = "&"
		}
		resp, body = tr.do(t, "PUT", loc+sep+"digest="+digest.FromBytes(b).String(), adminToken, nil, nil)
		return resp.StatusCode, string(body)
	}

	if code, body := upload("team/app", blob('a', 60)); code != http.StatusCreated {
		t.Fatalf("60 of 100 bytes: %d %s", code, body)
	}
	// The same blob in another repository of the namespace counts once.
	if code, body := upload("team/other", blob('a', 60)); code != http.StatusCreated {
		t.Fatalf("the same blob again: %d %s", code, body)
	}
	code, body := upload("team/app", blob('b', 50))
	if code != http.StatusForbidden || !strings.Contains(body, "DENIED") ||
		!strings.Contains(body, `quota exceeded in namespace \"team\": registryStorage: used 60 + requested 50`) || !strings.Contains(body, "limit 100") {
		t.Fatalf("60 + 50 of 100 bytes in one POST: %d %s; want 403 DENIED naming the numbers", code, body)
	}
	if code, body := chunked("team/app", blob('c', 50)); code != http.StatusForbidden {
		t.Fatalf("60 + 50 of 100 bytes in chunks: %d %s; want 403", code, body)
	}
	// Another namespace has no quota; its blob mounted into team counts.
	shared := blob('s', 30)
	if code, body := upload("shared/base", shared); code != http.StatusCreated {
		t.Fatalf("upload to shared: %d %s", code, body)
	}
	if code, body := upload("shared/base", blob('t', 500)); code != http.StatusCreated {
		t.Fatalf("namespace without quota: %d %s", code, body)
	}
	resp, b := tr.do(t, "POST", "/v2/team/app/blobs/uploads/?mount="+digest.FromBytes(shared).String()+"&from=shared/base", adminToken, nil, nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("mount 30 bytes into team (90 of 100): %d %s", resp.StatusCode, b)
	}
	big := blob('u', 20)
	if code, body := upload("shared/base", big); code != http.StatusCreated {
		t.Fatalf("upload to shared: %d %s", code, body)
	}
	resp, b = tr.do(t, "POST", "/v2/team/app/blobs/uploads/?mount="+digest.FromBytes(big).String()+"&from=shared/base", adminToken, nil, nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("mount 20 bytes into team (110 of 100): %d %s; want 403", resp.StatusCode, b)
	}
	if resp, _ := tr.do(t, "HEAD", "/v2/team/app/blobs/"+digest.FromBytes(big).String(), adminToken, nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("the refused mount's blob is in team/app: HEAD %d", resp.StatusCode)
	}
	// 10 bytes still fit.
	if code, body := chunked("team/app", blob('d', 10)); code != http.StatusCreated {
		t.Fatalf("90 + 10 of 100 bytes in chunks: %d %s", code, body)
	}
}
