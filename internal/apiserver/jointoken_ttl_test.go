package apiserver_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/apiserver"
)

// gantry join-token create --ttl sent an end computed on the CLI's clock:
// a laptop behind the server by more than the lifetime got "must be in the
// future", one ahead a token that lived longer than asked. ?ttl= is
// counted on the server's clock.
func TestJoinTokenLifetimeOnTheServersClock(t *testing.T) {
	srv, _, _ := startJoinServer(t)
	post := func(query, body string) (int, apiserver.CreatedJoinToken) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/v1/jointokens"+query, bytes.NewReader([]byte(body)))
		req.Header.Set("Authorization", "Bearer "+srv.Token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out apiserver.CreatedJoinToken
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	code, out := post("?ttl=1h", `{"kind":"JoinToken"}`)
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
		if code, _ := post(c.query, c.body); code != http.StatusBadRequest {
			t.Errorf("POST jointokens%s %s: %d, want 400", c.query, c.body, code)
		}
	}
}
