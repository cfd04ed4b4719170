package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// A CPU rate needs an earlier counter: the first round of a container or
// of the node has none, and a node counter that went back (a reboot, a
// counter reset) gives none for the interval. Such a round reported 0
// cores (the node's, from a counter that went back, a wrapped difference
// of about 10^19), and pulled averages and the autoscaler down; it
// reports CPU unknown, and /metrics leaves the gauge out.
func TestSamplerReportsCPUUnknownWithoutARate(t *testing.T) {
	const pid = 4244
	base := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	rt := &statsRuntime{pid: pid}
	s := newTestSampler(t, rt)
	writeNetDev(t, s.proc, pid, 0, 0, true)
	ctx := context.Background()
	for k, tt := range []struct {
		name                 string
		counter              uint64 // the container's CPU nanoseconds
		user, idle, steal    uint64 // /proc/stat jiffies
		instCPU, nodeCPU     float64
		instKnown, nodeKnown bool
	}{
		{"first round", 50e9, 100, 900, 0, 0, 0, false, false},
		{"second round", 60e9, 100, 1050, 50, 1, 0.5, true, true},      // 50 of 200 jiffies busy, of 2 cores
		{"steal counter reset", 70e9, 120, 1200, 0, 1, 0, true, false}, // busy 150 → 120 while total went on
		{"after the reset", 80e9, 220, 1300, 0, 1, 1, true, true},      // 100 of 200
	} {
		rt.cpuNanos = tt.counter
		stat := fmt.Sprintf("cpu  %d 0 0 %d 0 0 0 %d 0 0\n", tt.user, tt.idle, tt.steal)
		if err := os.WriteFile(filepath.Join(s.proc, "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
		r := s.sample(ctx, base.Add(time.Duration(k)*10*time.Second))
		s.mu.Lock()
		s.last = r
		s.mu.Unlock()
		if len(r.Instances) != 1 {
			t.Fatalf("%s: %d instances, want 1", tt.name, len(r.Instances))
		}
		if i := r.Instances[0]; i.CPUUnknown == tt.instKnown || i.CPU != tt.instCPU {
			t.Errorf("%s: instance cpu %v unknown %v, want %v unknown %v", tt.name, i.CPU, i.CPUUnknown, tt.instCPU, !tt.instKnown)
		}
		if n := r.Node; n.CPUUnknown == tt.nodeKnown || n.CPU != tt.nodeCPU {
			t.Errorf("%s: node cpu %v unknown %v, want %v unknown %v", tt.name, n.CPU, n.CPUUnknown, tt.nodeCPU, !tt.nodeKnown)
		}
		inst, node := exportedCPU(t, s)
		if inst != tt.instKnown || node != tt.nodeKnown {
			t.Errorf("%s: /metrics exports instance cpu %v, node cpu %v; want %v, %v", tt.name, inst, node, tt.instKnown, tt.nodeKnown)
		}
	}
}

// exportedCPU tells whether the agent's collector exports the CPU gauges
// of default/web-1 and of the node.
func exportedCPU(t *testing.T, s *sampler) (inst, node bool) {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.a.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "gantry_instance_cpu_usage_cores":
			inst = len(mf.GetMetric()) > 0
		case "gantry_node_cpu_usage_cores":
			node = len(mf.GetMetric()) > 0
		}
	}
	return inst, node
}
