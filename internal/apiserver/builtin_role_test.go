package apiserver_test

import (
	"net/http"
	"testing"
)

// A Role named after a built-in one was once stored (201) and then ignored
// by the authorizer ("built-ins cannot be shadowed"): an admin who
// narrowed "developer" this way (say, to take exec away) was told it
// worked, and every developer kept exec. It is refused now.
func TestRoleNamedLikeABuiltinIsRefused(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	body := `{"kind":"Role","metadata":{"name":"developer"},"spec":{"rules":[{"verbs":["get","list"],"resources":["apps"]}]}}`
	code, out := raw(t, ts, http.MethodPost, "/api/v1/roles", "application/json", []byte(body))
	if code < 400 {
		t.Errorf("create of Role developer answered %d %.150s; want a 4xx saying built-in roles cannot be redefined (the authorizer ignores it)", code, out)
	}
}
