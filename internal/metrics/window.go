// Package metrics keeps the recent history of resource use: every node's
// agent samples its instances and itself, and the server holds the
// samples in fixed-size rings (by default one hour at 10-second
// resolution) for `gantry top`, the metrics API, alert rules and the
// autoscaler.
//
// The window is in memory on purpose: it is a short, lossy view for
// decisions made now. Long-term history is Prometheus's job (/metrics).
package metrics

import (
	"sort"
	"sync"
	"time"
)

// Point is one sample of an instance or a node. Rates (CPU, network) are
// per second over the interval before Time.
type Point struct {
	Time time.Time `json:"time"`
	// CPU is cores in use (0.5 = half a core).
	CPU float64 `json:"cpu"`
	// Memory is the working set in bytes.
	Memory int64 `json:"memory"`
	// MemoryLimit is the hard limit (instances) or capacity (nodes).
	MemoryLimit int64   `json:"memoryLimit,omitempty"`
	RxBytes     float64 `json:"rxBytesPerSecond,omitempty"`
	TxBytes     float64 `json:"txBytesPerSecond,omitempty"`
	// Restarts is the instance's restart count at Time (cumulative).
	Restarts int `json:"restarts,omitempty"`
	// Instances counts what the point aggregates (apps, nodes).
	Instances int `json:"instances,omitempty"`
}

// InstanceSample is what an agent reports about one instance.
type InstanceSample struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	App       string `json:"app"`
	Node      string `json:"node"`
	// CPULimit is the instance's CPU cap or, without one, its request, in
	// cores: utilisation is measured against it.
	CPULimit float64 `json:"cpuLimit"`
	Point
}

// NodeSample is what an agent reports about its node.
type NodeSample struct {
	Node string `json:"node"`
	// CPUCapacity in cores.
	CPUCapacity float64 `json:"cpuCapacity"`
	Point
}

// Report is one agent's sampling round.
type Report struct {
	Node      NodeSample       `json:"node"`
	Instances []InstanceSample `json:"instances"`
}

// ring is a fixed-size circular buffer of points.
type ring struct {
	pts   []Point
	next  int
	full  bool
	meta  InstanceSample // labels of the series (last seen)
	touch time.Time
}

func newRing(n int) *ring { return &ring{pts: make([]Point, n)} }

func (r *ring) add(p Point) {
	r.pts[r.next] = p
	r.next = (r.next + 1) % len(r.pts)
	if r.next == 0 {
		r.full = true
	}
	r.touch = p.Time
}

// since returns the points at or after t, oldest first.
func (r *ring) since(t time.Time) []Point {
	var out []Point
	n := r.next
	if r.full {
		n = len(r.pts)
	}
	start := 0
	if r.full {
		start = r.next
	}
	for i := 0; i < n; i++ {
		p := r.pts[(start+i)%len(r.pts)]
		if !p.Time.Before(t) {
			out = append(out, p)
		}
	}
	return out
}

func (r *ring) last() (Point, bool) {
	if r.next == 0 && !r.full {
		return Point{}, false
	}
	return r.pts[(r.next-1+len(r.pts))%len(r.pts)], true
}

// Window holds recent samples of every instance and node. It is safe for
// concurrent use.
type Window struct {
	size     int
	interval time.Duration

	mu        sync.RWMutex
	instances map[string]*ring // ns/name
	nodes     map[string]*ring
	cpuLimit  map[string]float64
	nodeCPU   map[string]float64
	listeners []func(Report)
}

// NewWindow keeps span of history at the given sampling interval.
func NewWindow(span, interval time.Duration) *Window {
	return &Window{
		size: int(span / interval), interval: interval,
		instances: map[string]*ring{}, nodes: map[string]*ring{},
		cpuLimit: map[string]float64{}, nodeCPU: map[string]float64{},
	}
}

// Interval is the sampling interval the window expects.
func (w *Window) Interval() time.Duration { return w.interval }

// OnReport registers fn to see every report after it is stored (the
// autoscaler and alerts re-evaluate then). fn must not block.
func (w *Window) OnReport(fn func(Report)) {
	w.mu.Lock()
	w.listeners = append(w.listeners, fn)
	w.mu.Unlock()
}

// Add stores an agent's report.
func (w *Window) Add(r Report) {
	w.mu.Lock()
	nr, ok := w.nodes[r.Node.Node]
	if !ok {
		nr = newRing(w.size)
		w.nodes[r.Node.Node] = nr
	}
	nr.add(r.Node.Point)
	w.nodeCPU[r.Node.Node] = r.Node.CPUCapacity
	for _, s := range r.Instances {
		key := s.Namespace + "/" + s.Name
		ir, ok := w.instances[key]
		if !ok {
			ir = newRing(w.size)
			w.instances[key] = ir
		}
		ir.meta = s
		ir.add(s.Point)
		w.cpuLimit[key] = s.CPULimit
	}
	listeners := w.listeners
	w.mu.Unlock()
	for _, fn := range listeners {
		fn(r)
	}
}

// Forget drops series not updated since before, so deleted instances do
// not hold memory.
func (w *Window) Forget(before time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, r := range w.instances {
		if r.touch.Before(before) {
			delete(w.instances, k)
			delete(w.cpuLimit, k)
		}
	}
	for k, r := range w.nodes {
		if r.touch.Before(before) {
			delete(w.nodes, k)
			delete(w.nodeCPU, k)
		}
	}
}

// Instance returns an instance's points since t.
func (w *Window) Instance(ns, name string, since time.Time) []Point {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if r, ok := w.instances[ns+"/"+name]; ok {
		return r.since(since)
	}
	return nil
}

// InstanceLatest returns an instance's newest point and its labels.
func (w *Window) InstanceLatest(ns, name string) (InstanceSample, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	r, ok := w.instances[ns+"/"+name]
	if !ok {
		return InstanceSample{}, false
	}
	p, ok := r.last()
	s := r.meta
	s.Point = p
	return s, ok
}

// Node returns a node's points since t.
func (w *Window) Node(name string, since time.Time) []Point {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if r, ok := w.nodes[name]; ok {
		return r.since(since)
	}
	return nil
}

// NodeLatest returns a node's newest point and CPU capacity in cores.
func (w *Window) NodeLatest(name string) (Point, float64, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	r, ok := w.nodes[name]
	if !ok {
		return Point{}, 0, false
	}
	p, ok := r.last()
	return p, w.nodeCPU[name], ok
}

// App aggregates the instances of an App since t: for each sampling
// slot, CPU and memory are summed and Instances counts the instances that
// reported. The second result is the summed CPU limit (in cores) of the
// instances that reported in the newest slot.
func (w *Window) App(ns, app string, since time.Time) ([]Point, float64) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	slots := map[int64]*Point{}
	var newest time.Time
	var members []string
	for key, r := range w.instances {
		if r.meta.Namespace != ns || r.meta.App != app {
			continue
		}
		members = append(members, key)
		if r.touch.After(newest) {
			newest = r.touch
		}
		// Agents may sample more often than the window's resolution: an
		// instance counts once per slot, with its newest point in it.
		latest := map[int64]Point{}
		for _, p := range r.since(since) {
			latest[p.Time.Truncate(w.interval).Unix()] = p
		}
		for slot, p := range latest {
			a, ok := slots[slot]
			if !ok {
				a = &Point{Time: time.Unix(slot, 0).UTC()}
				slots[slot] = a
			}
			a.CPU += p.CPU
			a.Memory += p.Memory
			a.MemoryLimit += p.MemoryLimit
			a.RxBytes += p.RxBytes
			a.TxBytes += p.TxBytes
			a.Restarts += p.Restarts
			a.Instances++
		}
	}
	var limit float64
	for _, key := range members {
		if !w.instances[key].touch.Before(newest.Add(-w.interval)) {
			limit += w.cpuLimit[key]
		}
	}
	out := make([]Point, 0, len(slots))
	for _, p := range slots {
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, limit
}

// Series counts the series held, for the window's own memory reporting.
func (w *Window) Series() (instances, nodes int) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return len(w.instances), len(w.nodes)
}
