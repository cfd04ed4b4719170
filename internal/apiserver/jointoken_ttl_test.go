package apiserver_test

import (
	"net/http"
	"testing"
	"time"
)

// gantry join-token create --ttl sent an end computed on the CLI's clock:
// a laptop behind the server by more than the lifetime got "must be in the
// future", one ahead a token that lived longer than asked. ?ttl= is
// counted on the server's clock.
func TestJoinTokenLifetimeOnTheServersClock(t *testing.T) {
	srv, _, _ := startJoinServer(t)
	code, out := postJoinToken(t, srv, "?ttl=1h", `{"kind":"JoinToken"}`)
	if code != http.StatusCreated {
		t.Fatalf("ttl=1h: %d", code)
	}
	if d := time.Until(out.Spec.Expires); d < 59*time.Minute || d > 61*time.Minute {
		t.Errorf("ttl=1h: the token ends in %s, want an hour from the server's now", d.Round(time.Second))
	}
	for _, c := range []struct{ query, body string }{
		{"?ttl=soon", `{"kind":"JoinToken"}`},
		{"?ttl=-1h", `{"kind":"JoinToken"}`},
		{"?ttl=1h", `{"kind":"JoinToken","spec":{"expires":"2999-01-01T00:00:00Z"}}`},
		{"", `{"kind":"JoinToken","spec":{"expires":"2001-01-01T00:00:00Z"}}`},
	} {
		if code, _ := postJoinToken(t, srv, c.query, c.body); code != http.StatusBadRequest {
			t.Errorf("POST jointokens%s %s: %d, want 400", c.query, c.body, code)
		}
	}
}
