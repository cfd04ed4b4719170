package apiserver_test

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gantry-dev/gantry/internal/apiserver"
	"github.com/gantry-dev/gantry/internal/apiserver/apiservertest"
)

// The route label of gantry_api_requests_total and
// gantry_api_request_duration_seconds names a subresource only if it
// exists: any caller with a token could otherwise make a series per junk
// path segment, never deleted.
func TestAPIMetricsRouteLabelsAreBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv := startWith(t, reg)
	for i := 0; i < 50; i++ {
		code, _ := raw(t, srv, "GET", fmt.Sprintf("/api/v1/namespaces/default/apps/x/junk%d", i), "", nil)
		if code != 404 {
			t.Fatalf("junk subresource answered %d", code)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	routes := map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() != "gantry_api_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "route" {
					routes[l.GetValue()] = true
				}
			}
		}
	}
	if len(routes) != 1 || !routes["unknown"] {
		t.Fatalf("50 requests to unknown subresources made route label values %v; want only \"unknown\"", routes)
	}
}

// startWith starts a server whose metrics register in reg.
func startWith(t *testing.T, reg *prometheus.Registry) *testServer {
	register := apiserver.Option(func(s *apiserver.Server) { reg.MustRegister(s.Collectors()...) })
	return &testServer{apiservertest.Start(t, t.TempDir(), "127.0.0.1:0", register)}
}
