package apiserver

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

type auditLog struct {
	mu sync.Mutex
	es []AuditEntry
}

func (r *auditLog) Record(ctx context.Context, e AuditEntry) {
	r.mu.Lock()
	r.es = append(r.es, e)
	r.mu.Unlock()
}

// Every API request, allowed or denied, is recorded (docs/guide.md,
// audit). Requests refused before they reached an endpoint (a method the
// path does not take, a "." or ".." segment) left no record: a DELETE
// /api/v1/audit, or the DELETE …/apps/.. that once deleted a namespace,
// was invisible in the trail.
func TestRequestsRefusedBeforeAnEndpointAreAudited(t *testing.T) {
	e := storetest.EmbeddedIn(t, t.TempDir())
	st := store.New(e.Client, "")
	rec := &auditLog{}
	s := New(Config{}, st, allowAll{}, allowAll{}, slog.New(slog.DiscardHandler), WithAuditor(rec))
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/v1/namespaces/default/apps"}, // control: recorded
		{"DELETE", "/api/v1/audit"},
		{"PUT", "/api/v1/secret-key/rotate"},
		{"DELETE", "/api/v1/namespaces/team/apps/.."},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
		req.Header.Set("Authorization", "Bearer gat_whatever")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		rec.mu.Lock()
		found := false
		for _, e := range rec.es {
			found = found || (e.Method == c.method && e.Path == c.path)
		}
		rec.mu.Unlock()
		if !found {
			t.Errorf("%s %s = %d, and no audit record of it", c.method, c.path, resp.StatusCode)
		}
	}
}
