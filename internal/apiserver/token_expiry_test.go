package apiserver_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// POST /api/v1/tokens with spec.expires in the past once stored a token
// that could never authenticate and handed its secret out with 201 (the
// CLI checked --expires, the API did not): it is a 400 naming the field.
func TestTokenCreatedAlreadyExpiredIsRefused(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	past := time.Now().Add(-time.Hour).UTC()
	body, _ := json.Marshal(v1.Token{TypeMeta: v1.TypeMeta{Kind: "Token"}, Spec: v1.TokenSpec{User: "admin", Expires: &past}})
	code, out := raw(t, ts, "POST", "/api/v1/tokens", "application/json", body)
	if code != 400 || !strings.Contains(string(out), "spec.expires") {
		t.Errorf("a token that expired an hour ago: HTTP %d %.160s; want 400 naming spec.expires", code, out)
	}
}
