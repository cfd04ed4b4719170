package apiserver_test

import (
	"strings"
	"testing"
)

// docs/api.md lists GET, PUT and DELETE for /api/v1/namespaces/{ns}/{kind}/{name}
// and says another method than the path takes is 405. A POST there was
// served as a create instead (201, or 409 for an existing name).
func TestPostToANamedObjectIsMethodNotAllowed(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	code, body := raw(t, ts, "POST", "/api/v1/namespaces/default/apps/web", "application/json",
		[]byte(`{"kind":"App","metadata":{"name":"web"},"spec":{"image":"x:1"}}`))
	if code != 405 || !strings.Contains(body, "MethodNotAllowed") {
		t.Errorf("POST /api/v1/namespaces/default/apps/web = %d %s; want 405 as docs/api.md says", code, trunc(body))
	}
	if code, body := raw(t, ts, "GET", "/api/v1/namespaces/default/apps/web", "", nil); code != 404 {
		t.Errorf("after the POST, GET app web = %d %s; want 404 (nothing created)", code, trunc(body))
	}
	// The subresources that take POST still do.
	if code, body := raw(t, ts, "POST", "/api/v1/namespaces/default/apps", "application/json",
		[]byte(`{"kind":"App","metadata":{"name":"web"},"spec":{"image":"x:1"}}`)); code != 201 {
		t.Fatalf("create: %d %s", code, trunc(body))
	}
	if code, body := raw(t, ts, "POST", "/api/v1/namespaces/default/apps/web/restart", "", nil); code != 200 {
		t.Errorf("POST …/apps/web/restart = %d %s; want 200", code, trunc(body))
	}
}
