package registry

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

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
		if resp.StatusCode == http.StatusForbidden {
			return resp.StatusCode, string(body) // a chunk that cannot fit is refused at once
		}
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

// Manifests are blobs too: they count toward the quota, and one that
// would pass it is refused.
func TestStorageQuotaCountsManifests(t *testing.T) {
	tr := newTestRegistry(t, func(c *Config) {
		c.StorageQuota = func(_ context.Context, ns string) (int64, error) { return 1000, nil }
	})
	cfg := []byte("{}")
	tr.uploadBlob(t, "team/app", adminToken, cfg)
	small := manifestWith(t, map[string]any{"annotations": map[string]string{"n": "1"}}, cfg)
	if resp, body := tr.putManifest(t, "team/app", "v1", adminToken, small); resp.StatusCode != http.StatusCreated {
		t.Fatalf("a small manifest: %d %s", resp.StatusCode, body)
	}
	big := manifestWith(t, map[string]any{"annotations": map[string]string{"pad": strings.Repeat("x", 2000)}}, cfg)
	resp, body := tr.putManifest(t, "team/app", "v2", adminToken, big)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "registryStorage") || !strings.Contains(string(body), "registry gc") {
		t.Fatalf("a manifest past the quota: %d %s; want 403 naming the quota and what to do", resp.StatusCode, body)
	}
}

// A client whose upload body stalls does not hold up other pushes to
// its namespace: the quota is checked, not held, while a body streams.
func TestStorageQuotaDoesNotWaitForAStalledBody(t *testing.T) {
	tr := newTestRegistry(t, func(c *Config) {
		c.StorageQuota = func(_ context.Context, ns string) (int64, error) { return 1 << 20, nil }
	})
	big := []byte(strings.Repeat("z", 1000))
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", tr.srv.URL+"/v2/team/slow/blobs/uploads/?digest="+digest.FromBytes(big).String(), pr)
	req.ContentLength = int64(len(big))
	req.SetBasicAuth("someone", adminToken)
	req.Header.Set("Content-Type", "application/octet-stream")
	go pw.Write(big[:10]) // and then nothing until the other push is done
	slow := make(chan struct{})
	go func() {
		defer close(slow)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	done := make(chan struct{})
	go func() {
		defer close(done)
		tr.uploadBlob(t, "team/other", adminToken, []byte("small"))
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Error("a push to the namespace waited on another client's stalled body")
	}
	pw.Write(big[10:])
	pw.Close()
	<-slow
	<-done
}
