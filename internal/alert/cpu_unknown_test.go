package alert

import (
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/metrics"
)

// An instance's first sample has no CPU rate (metrics.Point.CPUUnknown):
// a cpu rule has no measure of it, rather than reading it as idle, while
// a memory rule still counts the sample.
func TestCPURuleHasNoMeasureOfASampleWithoutACPURate(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	w := metrics.NewWindow(time.Hour, 10*time.Second)
	w.Add(metrics.Report{Node: metrics.NodeSample{Node: "n1", Point: metrics.Point{Time: now}}, Instances: []metrics.InstanceSample{
		{Namespace: "default", Name: "web-a", App: "web", CPULimit: 1, Point: metrics.Point{Time: now, CPUUnknown: true, Memory: 90, MemoryLimit: 100}},
	}})
	s := &snapshot{now: now, window: w}
	if v, ok, _ := s.instanceValue(rule("r", v1.AlertCPU, 80), inst("web-a", "web")); ok {
		t.Errorf("cpu rule measured %v%% of a sample without a CPU rate", v)
	}
	if v, ok, _ := s.instanceValue(rule("r", v1.AlertMemory, 80), inst("web-a", "web")); !ok || v < 89.9 {
		t.Errorf("memory rule: %v, %v; want 90%%", v, ok)
	}
}
