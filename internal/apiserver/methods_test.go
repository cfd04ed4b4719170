package apiserver_test

import (
	"net/http"
	"testing"
)

// Other methods than the ones a generic path takes are 405: PUT, DELETE
// and PATCH on collections, PATCH, HEAD and OPTIONS on objects, and the
// wrong ones on every subresource.
func TestMethodsOnGenericPaths(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	if code, body := raw(t, ts, http.MethodPost, "/api/v1/namespaces/default/apps", "application/json", []byte(`{"metadata":{"name":"web"},"spec":{"image":"nginx","replicas":1,"ports":[{"port":80}]}}`)); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{http.MethodPut, "/api/v1/namespaces/default/apps", 405},
		{http.MethodDelete, "/api/v1/namespaces/default/apps", 405},
		{http.MethodPatch, "/api/v1/namespaces/default/apps", 405},
		{http.MethodPatch, "/api/v1/namespaces/default/apps/web", 405},
		{http.MethodHead, "/api/v1/namespaces/default/apps/web", 405},
		{http.MethodOptions, "/api/v1/namespaces/default/apps/web", 405},
		{http.MethodGet, "/api/v1/namespaces/default/apps/web/scale", 405},
		{http.MethodDelete, "/api/v1/namespaces/default/apps/web/scale", 405},
		{http.MethodGet, "/api/v1/namespaces/default/apps/web/pause", 405},
		{http.MethodDelete, "/api/v1/namespaces/default/apps/web/restart", 405},
		{http.MethodGet, "/api/v1/namespaces/default/apps/web/rollback", 405},
		{http.MethodPost, "/api/v1/namespaces/default/apps/web/logs", 405},
		{http.MethodGet, "/api/v1/namespaces/default/instances/x/exec", 405},
		{http.MethodGet, "/api/v1/namespaces/default/notifiers/x/test", 405},
		{http.MethodDelete, "/api/v1/namespaces/default/secrets/x/reveal", 405},
		{http.MethodGet, "/api/v1/namespaces/default/apps/web/nope", 404},
		{http.MethodGet, "/api/v1/namespaces/default/apps/..%2Fother", 404},
		{http.MethodGet, "/api/v1/namespaces/..%2Fkube/apps", 404},
		{http.MethodGet, "/api/v1/namespaces/default/apps/WEB", 404},
	} {
		if code, body := raw(t, ts, c.method, c.path, "", nil); code != c.want {
			t.Errorf("%s %s = %d, want %d: %s", c.method, c.path, code, c.want, trunc(body))
		}
	}
}
