package apiserver

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// A request whose handler panicked was recorded in the audit trail (and
// the request metrics) as a 200: the record was written on the way out
// of the handler, before withRecover answered 500. It is a 500 with
// reason "panic"; a stream cut short on purpose keeps the status it sent
// and says so.
func TestAPanickedRequestIsAuditedAsOne(t *testing.T) {
	e := storetest.EmbeddedIn(t, t.TempDir())
	st := store.New(e.Client, "")
	rec := &auditLog{}
	s := New(Config{}, st, allowAll{}, allowAll{}, slog.New(slog.DiscardHandler), WithAuditor(rec))
	mux := http.NewServeMux()
	mux.Handle("/boom", s.guarded("get", "x", "", func(w http.ResponseWriter, r *http.Request) error {
		var m map[string]int
		m["boom"] = 1
		return nil
	}))
	mux.Handle("/cut", s.guarded("get", "x", "", func(w http.ResponseWriter, r *http.Request) error {
		w.WriteHeader(http.StatusOK)
		w.Write([]byte("partial"))
		panic(http.ErrAbortHandler)
	}))
	srv := httptest.NewServer(s.withRequestID(s.withRecover(mux)))
	defer srv.Close()
	for _, tc := range []struct {
		path   string
		status int
		reason string
	}{
		{"/boom", http.StatusInternalServerError, "panic"},
		{"/cut", http.StatusOK, "cut short"},
	} {
		n := len(rec.entries())
		resp, err := http.Get(srv.URL + tc.path)
		if err == nil {
			resp.Body.Close()
		}
		es := rec.entries()
		if len(es) != n+1 {
			t.Fatalf("%s: %d audit records, want one more than %d", tc.path, len(es), n)
		}
		if got := es[n]; got.Status != tc.status || got.Reason != tc.reason {
			t.Errorf("%s: recorded %d %q, want %d %q", tc.path, got.Status, got.Reason, tc.status, tc.reason)
		}
	}
}

func (r *auditLog) entries() []AuditEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]AuditEntry(nil), r.es...)
}
