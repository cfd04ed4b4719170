package apiserver_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/apiserver"
	"github.com/gantry-dev/gantry/internal/apiserver/apiservertest"
	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/metrics"
)

// A node whose clock is off stamped its samples with it, and the window
// mixed clocks (its samples landed in future slots, or aged out early).
// The server moves such a report to when it arrived, keeping the
// intervals between its samples.
func TestMetricsReportFromASkewedNodeIsRestamped(t *testing.T) {
	w := metrics.NewWindow(time.Hour, 10*time.Second)
	ts := &testServer{apiservertest.Start(t, t.TempDir(), "127.0.0.1:0", apiserver.WithMetrics(w))}
	ctx := context.Background()
	inst := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: "web-1", Namespace: "default",
		Labels: map[string]string{v1.LabelApp: "web"}}, Spec: v1.InstanceSpec{App: "web", Revision: 1, Node: "n1"}}
	if err := ts.Store.Create(ctx, inst); err != nil {
		t.Fatal(err)
	}
	_, nodeTok, err := auth.CreateToken(ctx, ts.Store, v1.TokenSpec{Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	c := ts.client(t, nodeTok)
	for _, tc := range []struct {
		name string
		off  time.Duration
	}{
		{"the node's clock is ahead", 10 * time.Minute},
		{"the node's clock is behind", -10 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := time.Now()
			at := before.Add(tc.off)
			rep := metrics.Report{Node: metrics.NodeSample{CPUCapacity: 2, Point: metrics.Point{Time: at}},
				Instances: []metrics.InstanceSample{{Namespace: "default", Name: "web-1", App: "web",
					Point: metrics.Point{Time: at.Add(-time.Second), CPU: 0.5}}}}
			if _, err := c.Do(ctx, http.MethodPost, "/api/v1/nodes/n1/metrics", nil, rep, nil); err != nil {
				t.Fatal(err)
			}
			after := time.Now()
			node, _, ok := w.NodeLatest("n1")
			if !ok || node.Time.Before(before) || node.Time.After(after) {
				t.Fatalf("node sample stored at %v (%v), want the server's receive time, between %v and %v", node.Time, ok, before, after)
			}
			smp, ok := w.InstanceLatest("default", "web-1")
			if !ok || !smp.Time.Equal(node.Time.Add(-time.Second)) {
				t.Fatalf("instance sample stored at %v (%v), want a second before the node's %v, as sampled", smp.Time, ok, node.Time)
			}
		})
	}
}
