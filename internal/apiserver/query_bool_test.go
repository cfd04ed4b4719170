package apiserver_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
)

// watch, apply and force were "true" or nothing: watch=1 quietly answered
// a list to a client waiting for events, force=1 quietly drained an
// instance the caller asked to remove at once. They take what
// strconv.ParseBool takes now, and another value is 400, with nothing
// changed.
func TestYesNoQueryParameters(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	ctx := context.Background()
	inst := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: "web-1", Namespace: "default"},
		Spec: v1.InstanceSpec{App: "web", Revision: 1, Node: "n1"}}
	if err := ts.Store.Create(ctx, inst); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ method, path, body string }{
		{http.MethodGet, "/api/v1/namespaces/default/apps?watch=yes", ""},
		{http.MethodPut, "/api/v1/namespaces/default/apps/web?apply=maybe", `{"kind":"App","metadata":{"name":"web"},"spec":{"image":"web:v1"}}`},
		{http.MethodDelete, "/api/v1/namespaces/default/instances/web-1?force=please", ""},
	} {
		code, body := raw(t, ts, c.method, c.path, "application/json", []byte(c.body))
		if code != http.StatusBadRequest || !strings.Contains(body, "send true or false") {
			t.Errorf("%s %s = %d %s, want 400 naming the parameter", c.method, c.path, code, trunc(body))
		}
	}
	if _, err := store.Get[*v1.App](ctx, ts.Store, "default", "web"); err == nil {
		t.Error("an apply refused for its apply=maybe created the App")
	}
	if _, err := store.Get[*v1.Instance](ctx, ts.Store, "default", "web-1"); err != nil {
		t.Errorf("a delete refused for its force=please deleted the instance: %v", err)
	}

	if code, body := raw(t, ts, http.MethodPut, "/api/v1/namespaces/default/apps/web?apply=1", "application/json", []byte(`{"kind":"App","metadata":{"name":"web"},"spec":{"image":"web:v1"}}`)); code != http.StatusCreated && code != http.StatusOK {
		t.Errorf("PUT apply=1 of a new App = %d %s, want it created", code, trunc(body))
	}
	// force=1 removes the instance at once; without it, a placed
	// instance would only be marked for draining.
	if code, body := raw(t, ts, http.MethodDelete, "/api/v1/namespaces/default/instances/web-1?force=1", "", nil); code != http.StatusOK {
		t.Errorf("DELETE force=1 = %d %s", code, trunc(body))
	}
	if _, err := store.Get[*v1.Instance](ctx, ts.Store, "default", "web-1"); err == nil {
		t.Error("the instance is still there after DELETE force=1")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/api/v1/namespaces/default/apps?watch=1", nil)
	req.Header.Set("Authorization", "Bearer "+ts.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Errorf("GET watch=1 = %d %s, want a watch stream (application/x-ndjson)", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

// A PUT (update or apply, which may create) to a name that cannot be was
// 404 "not found", where the same name in a POST's body is a 400 naming
// metadata.name. A GET or DELETE of it is still 404: no such object can
// exist.
func TestInvalidNameInAPutPathIsAFieldError(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	body := []byte(`{"kind":"App","metadata":{"name":"Bad_Name"},"spec":{"image":"web:v1"}}`)
	for _, q := range []string{"?apply=true", ""} {
		code, out := raw(t, ts, http.MethodPut, "/api/v1/namespaces/default/apps/Bad_Name"+q, "application/json", body)
		if code != http.StatusBadRequest || !strings.Contains(out, `"field":"metadata.name"`) {
			t.Errorf("PUT apps/Bad_Name%s = %d %s, want 400 on metadata.name", q, code, trunc(out))
		}
	}
	for _, m := range []string{http.MethodGet, http.MethodDelete} {
		if code, out := raw(t, ts, m, "/api/v1/namespaces/default/apps/Bad_Name", "", nil); code != http.StatusNotFound {
			t.Errorf("%s apps/Bad_Name = %d %s, want 404", m, code, trunc(out))
		}
	}
}
