package main

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/metrics"
)

// appMetrics is what GET …/apps/NAME/metrics answers from w.
func appMetrics(t *testing.T, w *metrics.Window, ns, app string, since time.Time) *metricsBody {
	t.Helper()
	pts, limit := w.App(ns, app, since)
	b, err := json.Marshal(map[string]any{"cpuLimit": limit, "points": pts})
	if err != nil {
		t.Fatal(err)
	}
	var m metricsBody
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return &m
}

func TestTopAppRow(t *testing.T) {
	app := &v1.App{Metadata: v1.ObjectMeta{Namespace: "ns", Name: "web"}, Spec: v1.AppSpec{Template: v1.Template{
		Resources: v1.Resources{CPU: 500, Memory: 256 << 20, Limits: &v1.ResourceLimits{CPU: 1000}}}}}
	app.Status.Replicas = 2

	// Two nodes sample at their own moments (n1 at :08 :18 :28, n2 at
	// :11 :21 :31): a slot boundary falls between them.
	w := metrics.NewWindow(time.Hour, 10*time.Second)
	base := time.Unix(1_000_000, 0).UTC()
	for k := range 3 {
		for _, s := range []struct {
			node, inst string
			at         time.Duration
		}{{"n1", "web-1", 8 * time.Second}, {"n2", "web-2", 11 * time.Second}} {
			at := base.Add(s.at + time.Duration(k)*10*time.Second)
			w.Add(metrics.Report{Node: metrics.NodeSample{Node: s.node, Point: metrics.Point{Time: at}}, Instances: []metrics.InstanceSample{
				{Namespace: "ns", Name: s.inst, App: "web", CPULimit: 1, Point: metrics.Point{Time: at, CPU: 0.8, Memory: 100 << 20, MemoryLimit: 200 << 20}},
			}})
		}
	}

	for _, tt := range []struct {
		name string
		m    *metricsBody
		want []string
	}{
		{
			name: "instances on two nodes sampled at different moments all count",
			m:    appMetrics(t, w, "ns", "web", base),
			want: []string{"ns", "web", "2", "1600m", "80% of limit", "1000m", "200Mi", "50%"},
		},
		{
			name: "without metrics the request is that of the replicas",
			m:    nil,
			want: []string{"ns", "web", "2", "-", "-", "1000m", "-", "-"},
		},
		{
			name: "no points yet reads as no metrics",
			m:    &metricsBody{CPULimit: 2},
			want: []string{"ns", "web", "2", "-", "-", "1000m", "-", "-"},
		},
		{
			// Shown as 0m and 0%: idle, which the server is careful
			// never to say of an unknown rate.
			name: "a CPU not known yet is not idle",
			m:    &metricsBody{CPULimit: 2, Points: []metricsPoint{{CPUUnknown: true, Memory: 100 << 20, MemoryLimit: 200 << 20, Instances: 2}}},
			want: []string{"ns", "web", "2", "-", "-", "1000m", "100Mi", "50%"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := appTopRow(app, tt.m); !slices.Equal(got, tt.want) {
				t.Fatalf("row = %q\nwant  %q", got, tt.want)
			}
		})
	}
}
