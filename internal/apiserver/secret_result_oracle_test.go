package apiserver_test

import (
	"net/http"
	"testing"
)

// A developer may write secrets but not read their values (guide: "set
// secrets (not read their values through the API)"). An apply with
// ?dryRun=true stores nothing, yet writeSecret opened the stored values and
// answered X-Gantry-Result "unchanged" when the request's values equaled
// them and "configured" otherwise: a silent, non-destructive oracle for
// guessing a stored value (a PIN, a short password) one request at a time.
// Only a caller who may reveal the values still gets "unchanged".
func TestSecretApplyResultDoesNotRevealAGuessedValue(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	govNamespace(t, ts, "team", nil)
	put := func(tok, body string) (int, string, string) {
		code, b, h := request(t, ts, tok, http.MethodPut, "/api/v1/namespaces/team/secrets/db?apply=true&dryRun=true", "application/json", []byte(body))
		return code, h.Get("X-Gantry-Result"), b
	}
	// The admin stores the secret for real.
	if code, body := raw(t, ts, http.MethodPut, "/api/v1/namespaces/team/secrets/db?apply=true", "application/json",
		[]byte(`{"kind":"Secret","metadata":{"name":"db","namespace":"team"},"stringData":{"pin":"4711"}}`)); code >= 300 {
		t.Fatalf("setup: store secret: %d %.200s", code, body)
	}
	_, tok := govUser(t, ts, "dev", "developer", "team")
	guess := func(v string) string {
		code, res, body := put(tok, `{"kind":"Secret","metadata":{"name":"db","namespace":"team"},"stringData":{"pin":"`+v+`"}}`)
		if code >= 300 {
			t.Fatalf("dry-run apply by the developer: %d %.200s", code, body)
		}
		return res
	}
	wrong, right := guess("0000"), guess("4711")
	if wrong != right {
		t.Errorf("a developer, who may not reveal secrets, learns the stored value by dry-run applies: a wrong guess answers %q, the right one %q", wrong, right)
	}
	// The admin may reveal it, and is told that nothing would change.
	if code, res, body := put(ts.Token, `{"kind":"Secret","metadata":{"name":"db","namespace":"team"},"stringData":{"pin":"4711"}}`); code >= 300 || res != "unchanged" {
		t.Errorf("the admin's dry-run apply of the stored value: %d %q %.200s; want unchanged", code, res, body)
	}
}
