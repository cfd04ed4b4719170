package metrics

import (
	"runtime"
	"testing"
	"time"
)

func TestAppAggregatesOncePerInstancePerSlot(t *testing.T) {
	w := NewWindow(time.Hour, 10*time.Second)
	base := time.Unix(1_000_000, 0).UTC()
	for i := 0; i < 5; i++ { // five samples 2s apart, all in one 10s slot
		at := base.Add(time.Duration(i) * 2 * time.Second)
		w.Add(Report{Node: NodeSample{Node: "n1", Point: Point{Time: at}}, Instances: []InstanceSample{
			{Namespace: "ns", Name: "a-1", App: "a", CPULimit: 0.5, Point: Point{Time: at, CPU: float64(i) / 10, Memory: 100}},
			{Namespace: "ns", Name: "a-2", App: "a", CPULimit: 0.5, Point: Point{Time: at, CPU: 0.1, Memory: 200}},
			{Namespace: "ns", Name: "b-1", App: "b", CPULimit: 1, Point: Point{Time: at, CPU: 1, Memory: 1}},
		}})
	}
	pts, limit := w.App("ns", "a", base.Add(-time.Minute))
	if len(pts) != 1 {
		t.Fatalf("%d points, want 1 slot", len(pts))
	}
	p := pts[0]
	if p.Instances != 2 || p.Memory != 300 || p.CPU < 0.499 || p.CPU > 0.501 || limit != 1 {
		t.Fatalf("got %+v limit %v; want 2 instances, 300 bytes, 0.5 cores (newest of each), limit 1", p, limit)
	}
	if got := w.Instance("ns", "a-1", base); len(got) != 5 {
		t.Fatalf("instance series has %d points, want 5", len(got))
	}
	w.Forget(base.Add(time.Hour))
	if i, n := w.Series(); i != 0 || n != 0 {
		t.Fatalf("after Forget: %d instance and %d node series", i, n)
	}
}

func TestRingWrapsAndKeepsOrder(t *testing.T) {
	r := newRing(3)
	base := time.Unix(0, 0)
	for i := 0; i < 5; i++ {
		r.add(Point{Time: base.Add(time.Duration(i) * time.Second), Restarts: i})
	}
	got := r.since(base)
	if len(got) != 3 || got[0].Restarts != 2 || got[2].Restarts != 4 {
		t.Fatalf("ring = %+v", got)
	}
	if last, _ := r.last(); last.Restarts != 4 {
		t.Fatalf("last = %+v", last)
	}
}

// BenchmarkWindowMemory reports the window's heap for 1,000 instances at
// 10s resolution over an hour (issue 7: under 50 MB).
func BenchmarkWindowMemory(b *testing.B) {
	for n := 0; n < b.N; n++ {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		w := NewWindow(time.Hour, 10*time.Second)
		base := time.Now()
		for slot := 0; slot < 360; slot++ {
			r := Report{Node: NodeSample{Node: "n1", Point: Point{Time: base}}}
			for i := 0; i < 1000; i++ {
				r.Instances = append(r.Instances, InstanceSample{Namespace: "ns", Name: "i-" + itoa(i), App: "app-" + itoa(i%50), Point: Point{Time: base.Add(time.Duration(slot) * 10 * time.Second), CPU: 0.1}})
			}
			w.Add(r)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MB-retained")
		runtime.KeepAlive(w)
	}
}

func itoa(i int) string {
	const digits = "0123456789"
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{digits[i%10]}, b...)
	}
	return string(b)
}
