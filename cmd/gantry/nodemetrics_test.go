package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// gantry agent served its metrics only to the API server (mutual TLS on
// --listen), so Prometheus could scrape the container metrics of the
// gantry up node only (review helper-160). Both commands serve a node's
// metrics the same way now: plain HTTP on a flag's address.
func TestServeNodeMetrics(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "gantry_test_node_total", Help: "test"})
	reg.MustRegister(c)
	c.Inc()
	log := slog.New(slog.DiscardHandler)
	addr, err := serveNodeMetrics(ctx, "127.0.0.1:0", "--metrics-addr", reg, log)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "gantry_test_node_total 1") {
		t.Errorf("GET /metrics = %d %q, want the registry's metrics", resp.StatusCode, b)
	}

	if addr, err := serveNodeMetrics(ctx, "", "--metrics-addr", reg, log); addr != nil || err != nil {
		t.Errorf("an empty address served on %v (%v), want nowhere", addr, err)
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	if _, err := serveNodeMetrics(ctx, taken.Addr().String(), "--metrics-addr", reg, log); err == nil || !strings.Contains(err.Error(), "--metrics-addr") {
		t.Errorf("an address in use: %v, want an error naming --metrics-addr", err)
	}
}

// --node-port-addr takes an IP address only; a port or a name is refused
// before anything starts (review helper-167 asked for the flag).
func TestNodePortAddrIsAnIP(t *testing.T) {
	for _, v := range []string{"1.2.3.4:5", "localhost", "x"} {
		root := newRootCmd()
		var out strings.Builder
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs([]string{"up", "--no-agent", "--data-dir", t.TempDir(), "--node-port-addr", v})
		if err := root.ExecuteContext(context.Background()); err == nil || !strings.Contains(err.Error(), "--node-port-addr") {
			t.Errorf("--node-port-addr %q: %v", v, err)
		}
	}
}
