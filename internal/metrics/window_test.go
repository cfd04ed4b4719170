package metrics

import (
	"math"
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

// sampled is one instance's sample as its node's agent reports it.
type sampled struct {
	node, inst string
	at         time.Duration // after the test's base, a slot boundary
}

// addSamples reports each sample from its node, every instance of App
// "a" running at 0.8 of its 1-core limit.
func addSamples(w *Window, base time.Time, samples []sampled) {
	for _, s := range samples {
		at := base.Add(s.at)
		w.Add(Report{Node: NodeSample{Node: s.node, Point: Point{Time: at}}, Instances: []InstanceSample{
			{Namespace: "ns", Name: s.inst, App: "a", CPULimit: 1, Point: Point{Time: at, CPU: 0.8, Memory: 100, MemoryLimit: 200}},
		}})
	}
}

// every returns the samples of inst on node every d from first, n times.
func every(node, inst string, first, d time.Duration, n int) []sampled {
	var out []sampled
	for k := 0; k < n; k++ {
		out = append(out, sampled{node, inst, first + time.Duration(k)*d})
	}
	return out
}

// Agents sample at their own moments: the newest slot of an App must
// still count the instances whose node sampled just before it began, and
// the CPU limit must be that of the instances counted (gantry top apps
// showed half an App at half its CPU when a slot boundary fell between
// two nodes' samples).
func TestAppNewestPointCountsEveryInstanceStillReporting(t *testing.T) {
	const s = time.Second
	for _, tc := range []struct {
		name      string
		samples   []sampled
		instances int
		limit     float64
	}{
		{
			name:      "two nodes a slot boundary apart",
			samples:   append(every("n1", "a-1", 8*s, 10*s, 3), every("n2", "a-2", 11*s, 10*s, 3)...), // :08 :18 :28, :11 :21 :31
			instances: 2, limit: 2,
		},
		{
			name:      "two nodes sampling every minute at different moments",
			samples:   append(every("n1", "a-1", 5*s, 60*s, 3), every("n2", "a-2", 42*s, 60*s, 3)...),
			instances: 2, limit: 2,
		},
		{
			name: "an instance that stopped reporting drops out once its next sample was due",
			samples: append(append(every("n1", "a-1", 8*s, 10*s, 5), every("n2", "a-2", 11*s, 10*s, 5)...),
				every("n2", "a-3", 11*s, 10*s, 2)...), // a-3 last at :21, due at :31
			instances: 2, limit: 2,
		},
		{
			name:      "an instance sampled twice in the slot counts once",
			samples:   append(every("n1", "a-1", 0, 2*s, 20), every("n2", "a-2", 5*s, 10*s, 4)...),
			instances: 2, limit: 2,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := NewWindow(time.Hour, 10*time.Second)
			base := time.Unix(1_000_000, 0).UTC()
			addSamples(w, base, tc.samples)
			pts, limit := w.App("ns", "a", base.Add(-time.Hour))
			if len(pts) == 0 {
				t.Fatal("no points")
			}
			p := pts[len(pts)-1]
			if p.Instances != tc.instances || limit != tc.limit {
				t.Fatalf("newest point %+v, limit %v; want %d instances, limit %v", p, limit, tc.instances, tc.limit)
			}
			if share := p.CPU / limit; math.Abs(share-0.8) > 1e-9 {
				t.Fatalf("CPU %.2f of limit %.2f is %.0f%%, want 80%% (each instance runs at 80%%)", p.CPU, limit, share*100)
			}
			if p.Memory != 100*int64(tc.instances) || p.MemoryLimit != 200*int64(tc.instances) {
				t.Fatalf("memory %d of %d, want both from the %d instances counted", p.Memory, p.MemoryLimit, tc.instances)
			}
		})
	}
}

// The window holds its span by time whatever the agents' sampling
// interval, and no more points than that takes: a ring for 10 s sampling
// stays at 360 (the memory benchmark's figure), one for faster sampling
// grows, up to one point a second.
func TestWindowHoldsAnHourWhateverTheSamplingInterval(t *testing.T) {
	for _, tc := range []struct {
		every  time.Duration
		points int // the ring's size after two hours
		held   time.Duration
	}{
		{every: 10 * time.Second, points: 360, held: time.Hour - 10*time.Second},
		{every: 2 * time.Second, points: 1800, held: time.Hour - 2*time.Second},
		{every: 60 * time.Second, points: 360, held: time.Hour},
		{every: time.Second, points: 3600, held: time.Hour - time.Second},
		{every: 100 * time.Millisecond, points: 3600, held: 6*time.Minute - 100*time.Millisecond},
	} {
		t.Run("sampled every "+tc.every.String(), func(t *testing.T) {
			w := NewWindow(time.Hour, 10*time.Second)
			base := time.Unix(1_000_000, 0).UTC()
			var last time.Time
			for at := base; at.Before(base.Add(2 * time.Hour)); at = at.Add(tc.every) {
				w.Add(Report{Node: NodeSample{Node: "n1", Point: Point{Time: at}}, Instances: []InstanceSample{{Namespace: "ns", Name: "i", App: "a", Point: Point{Time: at}}}})
				last = at
			}
			pts := w.Instance("ns", "i", base)
			if held := pts[len(pts)-1].Time.Sub(pts[0].Time); held != tc.held || !pts[len(pts)-1].Time.Equal(last) {
				t.Fatalf("instance series holds %s up to %s, want %s up to the newest sample", held, pts[len(pts)-1].Time, tc.held)
			}
			if nodes := w.Node("n1", base); len(nodes) != len(pts) {
				t.Fatalf("node series has %d points, instance series %d", len(nodes), len(pts))
			}
			if got := len(w.instances["ns/i"].pts); got != tc.points {
				t.Fatalf("ring of %d points, want %d", got, tc.points)
			}
			if got := w.InstanceInterval("ns", "i"); got != tc.every {
				t.Fatalf("InstanceInterval = %s, want %s", got, tc.every)
			}
		})
	}
}

func TestInstanceIntervalIsTheWindowsUntilTwoSamples(t *testing.T) {
	w := NewWindow(time.Hour, 10*time.Second)
	if got := w.InstanceInterval("ns", "i"); got != 0 {
		t.Fatalf("unknown instance: %s, want 0", got)
	}
	base := time.Unix(1_000_000, 0).UTC()
	addSamples(w, base, []sampled{{"n1", "i", 0}})
	if got := w.InstanceInterval("ns", "i"); got != 10*time.Second {
		t.Fatalf("after one sample: %s, want the window's 10s", got)
	}
	addSamples(w, base, []sampled{{"n1", "i", 30 * time.Second}})
	if got := w.InstanceInterval("ns", "i"); got != 30*time.Second {
		t.Fatalf("after two samples 30s apart: %s, want 30s", got)
	}
}

func TestRingWrapsAndKeepsOrder(t *testing.T) {
	r := newRing(3)
	base := time.Unix(0, 0)
	for i := 0; i < 5; i++ {
		r.add(Point{Time: base.Add(time.Duration(i) * time.Second), Restarts: i}, 3*time.Second, 3)
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
