package apiserver_test

import (
	"net/http"
	"strings"
	"testing"
)

// A path with dot segments (/api/v1/namespaces/team/apps/..) was
// redirected (307) by ServeMux to the cleaned path, which names another
// object: a client following the redirect of a DELETE, as Go's does,
// deleted namespace team. Such paths, and empty segments, are 400.
func TestPathWithDotOrEmptySegmentsIsRefused(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	if code, body := raw(t, ts, "POST", "/api/v1/namespaces", "application/json", []byte(`{"kind":"Namespace","metadata":{"name":"team"}}`)); code != 201 {
		t.Fatalf("namespace: %d %s", code, body)
	}
	for _, p := range []string{
		"/api/v1/namespaces/team/apps/..",
		"/api/v1/namespaces/team/apps/x/../..",
		"/api/v1/namespaces/team/./apps",
		"/api/v1/namespaces//team",
		"//api/v1/namespaces/team",
	} {
		req, err := http.NewRequest(http.MethodDelete, ts.URL+p, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+ts.Token)
		resp, err := http.DefaultClient.Do(req) // follows redirects
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(resp.Header.Get("Content-Type"), "json") {
			t.Errorf("DELETE %s = %d (%s); want 400 JSON", p, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
	// Escaped, the dots are a name (an invalid one), not a step up.
	if code, body := raw(t, ts, "DELETE", "/api/v1/namespaces/team/apps/%2e%2e", "", nil); code != 404 {
		t.Errorf("DELETE …/apps/%%2e%%2e = %d %s; want 404", code, trunc(body))
	}
	if code, body := raw(t, ts, "GET", "/api/v1/namespaces/team", "", nil); code != 200 || strings.Contains(body, `"deleting"`) {
		t.Errorf("namespace team after the requests: %d %s; want it there and not being deleted", code, trunc(body))
	}
}
