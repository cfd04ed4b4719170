package metrics

import (
	"math"
	"testing"
	"time"
)

// The first sample of a container (a new instance, or any after its
// agent restarted) has no earlier counter to take a CPU rate from. It
// used to read as 0 cores, which pulled an App's CPU per instance, and
// so the autoscaler, down.
func TestWindowKeepsTheLastKnownCPUInPlaceOfAnUnknownOne(t *testing.T) {
	type smp struct {
		at      time.Duration
		cpu     float64
		unknown bool
	}
	for _, tc := range []struct {
		name    string
		samples []smp
		// of the newest point of the instance's series
		cpu     float64
		unknown bool
	}{
		{"a first sample stays unknown", []smp{{0, 0, true}}, 0, true},
		{"a known sample", []smp{{0, 0, true}, {10 * time.Second, 0.4, false}}, 0.4, false},
		{"after the agent restarted", []smp{{0, 0.4, false}, {10 * time.Second, 0.6, false}, {30 * time.Second, 0, true}}, 0.6, false},
		{"twice unknown", []smp{{0, 0.6, false}, {10 * time.Second, 0, true}, {20 * time.Second, 0, true}}, 0.6, false},
		{"the known one is older than the span", []smp{{0, 0.6, false}, {2 * time.Hour, 0, true}}, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := NewWindow(time.Hour, 10*time.Second)
			base := time.Unix(1_000_000, 0).UTC()
			for _, s := range tc.samples {
				p := Point{Time: base.Add(s.at), CPU: s.cpu, Memory: 100, CPUUnknown: s.unknown}
				w.Add(Report{Node: NodeSample{Node: "n1", Point: p},
					Instances: []InstanceSample{{Namespace: "ns", Name: "i", App: "a", Node: "n1", CPULimit: 1, Point: p}}})
			}
			got, _ := w.InstanceLatest("ns", "i")
			if got.CPU != tc.cpu || got.CPUUnknown != tc.unknown || got.Memory != 100 {
				t.Errorf("instance's newest point: cpu %v unknown %v memory %d; want cpu %v unknown %v memory 100",
					got.CPU, got.CPUUnknown, got.Memory, tc.cpu, tc.unknown)
			}
			node, _, _ := w.NodeLatest("n1")
			if node.CPU != tc.cpu || node.CPUUnknown != tc.unknown {
				t.Errorf("node's newest point: cpu %v unknown %v; want cpu %v unknown %v", node.CPU, node.CPUUnknown, tc.cpu, tc.unknown)
			}
		})
	}
}

// An App's point counts an instance whose CPU is not known yet in its
// memory and instances, and in CPU at the mean of the others, so that
// CPU per instance is that of the instances measured.
func TestAppCountsAnInstanceWithoutCPUAtTheOthersMean(t *testing.T) {
	type inst struct {
		name    string
		cpu     float64
		unknown bool
	}
	for _, tc := range []struct {
		name      string
		instances []inst
		cpu       float64 // of the point
		unknown   bool
	}{
		{"all known", []inst{{"a-1", 0.8, false}, {"a-2", 0.4, false}}, 1.2, false},
		{"a new instance", []inst{{"a-1", 0.8, false}, {"a-2", 0.4, false}, {"a-3", 0, true}}, 1.8, false},
		{"only new instances", []inst{{"a-1", 0, true}, {"a-2", 0, true}}, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := NewWindow(time.Hour, 10*time.Second)
			base := time.Unix(1_000_000, 0).UTC()
			r := Report{Node: NodeSample{Node: "n1", Point: Point{Time: base}}}
			for _, i := range tc.instances {
				r.Instances = append(r.Instances, InstanceSample{Namespace: "ns", Name: i.name, App: "a", Node: "n1", CPULimit: 1,
					Point: Point{Time: base, CPU: i.cpu, CPUUnknown: i.unknown, Memory: 100}})
			}
			w.Add(r)
			pts, limit := w.App("ns", "a", base)
			if len(pts) != 1 {
				t.Fatalf("%d points, want 1", len(pts))
			}
			p, n := pts[0], len(tc.instances)
			if p.Instances != n || p.Memory != 100*int64(n) || limit != float64(n) {
				t.Errorf("point counts %d instances, %d bytes, limit %v; want all %d: %d bytes, limit %d", p.Instances, p.Memory, limit, n, 100*n, n)
			}
			if math.Abs(p.CPU-tc.cpu) > 1e-9 || p.CPUUnknown != tc.unknown {
				t.Errorf("point's cpu %v unknown %v; want %v unknown %v", p.CPU, p.CPUUnknown, tc.cpu, tc.unknown)
			}
		})
	}
}

func TestBusyShare(t *testing.T) {
	for _, tc := range []struct {
		name                             string
		prevBusy, prevTotal, busy, total uint64
		share                            float64
		ok                               bool
	}{
		{"a quarter busy", 100, 1000, 150, 1200, 0.25, true},
		{"idle", 100, 1000, 100, 1200, 0, true},
		{"no earlier read", 0, 0, 150, 1200, 0, false},
		{"no time counted", 100, 1000, 100, 1000, 0, false},
		{"rebooted: both back", 100, 1000, 5, 40, 0, false},
		{"busy back, total on", 100, 1000, 90, 1200, 0, false},
		{"idle back: busy ahead of total", 100, 1000, 400, 1200, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			share, ok := BusyShare(tc.prevBusy, tc.prevTotal, tc.busy, tc.total)
			if share != tc.share || ok != tc.ok {
				t.Errorf("BusyShare(%d, %d, %d, %d) = %v, %v; want %v, %v", tc.prevBusy, tc.prevTotal, tc.busy, tc.total, share, ok, tc.share, tc.ok)
			}
		})
	}
}
