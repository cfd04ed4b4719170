package apiserver_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gantry-dev/gantry/internal/apiserver"
	"github.com/gantry-dev/gantry/internal/apiserver/apiservertest"
)

type fixedAuditSink struct {
	mu sync.Mutex
	es []apiserver.AuditEntry
}

func (a *fixedAuditSink) Record(_ context.Context, e apiserver.AuditEntry) {
	a.mu.Lock()
	a.es = append(a.es, e)
	a.mu.Unlock()
}

// The guide ("Audit"): "Every API and registry request, allowed or
// denied, is recorded". GET /api/v1/whoami and GET /metrics authenticated
// bearer tokens (and /metrics authorized them) outside serveAPI and
// guarded, so a failed authentication or a denial there left no record:
// someone trying stolen tokens against whoami left no trace in the trail.
func TestWhoAmIAndMetricsAreAudited(t *testing.T) {
	sink := &fixedAuditSink{}
	ts := apiservertest.Start(t, t.TempDir(), "127.0.0.1:0", apiserver.WithAuditor(sink), apiserver.WithPrometheus(prometheus.NewRegistry()))
	bad := "gtk_aaaaaaaa_" + strings.Repeat("a", 52)
	for _, path := range []string{"/api/v1/whoami", "/metrics"} {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+bad)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("setup: GET %s with an unknown token: %d", path, resp.StatusCode)
		}
		sink.mu.Lock()
		found := false
		for _, e := range sink.es {
			if e.Path == path {
				found = true
			}
		}
		sink.mu.Unlock()
		if !found {
			t.Errorf("GET %s with an unknown token (401) left no audit record", path)
		}
	}
	// Allowed requests are recorded too, with their user, and still work.
	for _, path := range []string{"/api/v1/whoami", "/metrics"} {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+ts.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s as the admin: %d; want 200", path, resp.StatusCode)
		}
		sink.mu.Lock()
		found := false
		for _, e := range sink.es {
			if e.Path == path && e.Status == http.StatusOK && e.User != "" && e.User != "system:anonymous" {
				found = true
			}
		}
		sink.mu.Unlock()
		if !found {
			t.Errorf("GET %s as the admin (200) left no audit record naming the user", path)
		}
	}
}
