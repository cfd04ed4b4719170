package registry

import (
	"net/http"
	"sync"
	"testing"
)

// A successful exchange of a platform token for a registry token at
// /v2/token was once audited without the identity that authenticated (the
// server then recorded it as anonymous), and a POST to it as a "push". It
// is recorded with its user, as a token action.
func TestTokenRequestsAreAuditedWithTheirUser(t *testing.T) {
	var mu sync.Mutex
	var recs []RequestRecord
	tr := newTestRegistry(t, func(c *Config) {
		c.OnRequest = func(r RequestRecord) { mu.Lock(); recs = append(recs, r); mu.Unlock() }
	})
	resp, body := tr.do(t, "GET", "/v2/token?service=gantry&scope=repository:team/app:pull,push", aliceToken, nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("token: %d %s", resp.StatusCode, body)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(recs) != 1 || recs[0].Identity.User != "alice" || recs[0].Action != ActionToken {
		t.Errorf("audit of a token issued to alice: %+v", recs)
	}
}
