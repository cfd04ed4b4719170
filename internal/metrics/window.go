// Package metrics keeps the recent history of resource use: every node's
// agent samples its instances and itself, and the server holds an hour
// of samples (by default) in rings for `gantry top`, the metrics API,
// alert rules and the autoscaler. A ring is sized for the window's
// resolution (10 s by default) and grows when an agent samples faster, so
// that the window holds its span by time whatever the agents'
// --sample-interval.
//
// The window is in memory on purpose: it is a short, lossy view for
// decisions made now. Long-term history is Prometheus's job (/metrics).
package metrics

import (
	"math"
	"slices"
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
	// CPUUnknown marks a point without a CPU measure (CPU is then 0): an
	// agent reports one when it has no earlier counter to take the rate
	// from (the first sample of a container, or of a node after its agent
	// started) or a counter went back. The window keeps the series' last
	// known CPU in its place, so its points are unknown only while their
	// series has none.
	CPUUnknown bool `json:"cpuUnknown,omitempty"`
	// CPUKnown counts the instances of an App's point whose CPU is
	// known; those not known yet count in CPU at their mean (for the
	// autoscaler, which takes them as carrying none).
	CPUKnown int `json:"-"`
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

// maxSkew is how far a report's time may be from the server's clock
// before the server restamps it.
const maxSkew = time.Second

// Time is when the report was sampled: its node sample's time or, when
// that is zero, its newest instance sample's.
func (r *Report) Time() time.Time {
	t := r.Node.Time
	if t.IsZero() {
		for _, s := range r.Instances {
			if s.Time.After(t) {
				t = s.Time
			}
		}
	}
	return t
}

// Skewed tells whether the report's Time is more than a second off now:
// its agent's clock is not the server's.
func (r *Report) Skewed(now time.Time) bool {
	return r.Time().Sub(now).Abs() > maxSkew
}

// shift moves every sample's time by the same amount, so that the
// intervals between them stay as sampled. A sample without a time gets
// now.
func (r *Report) shift(by time.Duration, now time.Time) {
	move := func(t time.Time) time.Time {
		if t.IsZero() {
			return now
		}
		return t.Add(by)
	}
	r.Node.Time = move(r.Node.Time)
	for i := range r.Instances {
		r.Instances[i].Time = move(r.Instances[i].Time)
	}
}

// Clocks restamps the reports of agents whose clocks are off (Skewed).
// It keeps the shift it gave a node's last report and gives the next the
// same while that lands within maxSkew of its arrival: restamping each
// report to its own arrival would carry network and scheduling delays
// into the series, so that a late report followed by a prompt one could
// put a sample before the previous one. The zero value is ready to use,
// and it is safe for concurrent use.
type Clocks struct {
	mu     sync.Mutex
	shifts map[string]time.Duration // by node
}

// Align restamps rep, a report from node that arrived at now, if its
// clock is off, so that the window's slots and ages are of one clock, and
// returns by how much it moved its samples. The first report it restamps
// lands at now.
func (c *Clocks) Align(node string, rep *Report, now time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := rep.Time()
	if t.IsZero() {
		rep.shift(0, now) // nothing to learn the node's clock from
		return 0
	}
	// The kept shift first: a node about maxSkew off would otherwise
	// flip between restamped and not from one report to the next. A
	// clock set right leaves it more than maxSkew off, since it was more.
	if by, ok := c.shifts[node]; ok && t.Add(by).Sub(now).Abs() <= maxSkew {
		rep.shift(by, now)
		return by
	}
	if !rep.Skewed(now) {
		delete(c.shifts, node) // its clock was set right
		return 0
	}
	by := now.Sub(t)
	if c.shifts == nil {
		c.shifts = map[string]time.Duration{}
	}
	c.shifts[node] = by
	rep.shift(by, now)
	return by
}

// minSpacing bounds a series' memory: the window holds its span of a
// series sampled at most this often, and less of one sampled faster.
const minSpacing = time.Second

// ring is a circular buffer of one series' points, oldest overwritten
// first.
type ring struct {
	pts   []Point
	next  int
	full  bool
	meta  InstanceSample // labels of the series (last seen)
	touch time.Time
}

func newRing(n int) *ring { return &ring{pts: make([]Point, max(n, 2))} }

// add stores p. A full ring about to overwrite a point younger than span
// is too small for how often its series is sampled: it first grows to
// the size that holds span at the spacing its points arrive at, up to
// limit points. The slack keeps a sample that comes early (a tick
// delayed by a slow round) from growing a ring of the right size.
func (r *ring) add(p Point, span time.Duration, limit int) {
	if r.full && len(r.pts) < limit {
		// len(pts) spacings separate the oldest point from p.
		held := p.Time.Sub(r.pts[r.next].Time)
		if held > 0 && held < span-span/32 {
			want := int(math.Ceil(float64(span) / float64(held) * float64(len(r.pts))))
			r.grow(min(want, limit))
		}
	}
	r.pts[r.next] = p
	r.next = (r.next + 1) % len(r.pts)
	if r.next == 0 {
		r.full = true
	}
	r.touch = p.Time
}

// grow moves the points, oldest first, into a larger buffer of n.
func (r *ring) grow(n int) {
	pts := make([]Point, n)
	held := copy(pts, r.since(time.Time{}))
	r.pts, r.next, r.full = pts, held%n, held == n
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

// knownCPU returns p, with the CPU of the series' newest point in place
// of an unknown one if that point is within span of p: a rate the agent
// could not take (its first sample after a restart) would otherwise read
// as idle and pull averages down.
func (r *ring) knownCPU(p Point, span time.Duration) Point {
	if !p.CPUUnknown {
		return p
	}
	if l, ok := r.last(); ok && !l.CPUUnknown && p.Time.Sub(l.Time) <= span {
		p.CPU, p.CPUUnknown = l.CPU, false
	}
	return p
}

func (r *ring) last() (Point, bool) {
	if r.next == 0 && !r.full {
		return Point{}, false
	}
	return r.pts[(r.next-1+len(r.pts))%len(r.pts)], true
}

// spacings is how many of a series' newest spacings its sampling
// interval is judged from.
const spacings = 5

// spacing is how often the agent samples the series: the median of the
// times between its newest points (the shorter middle one of an even
// count). Not just the newest: after a break in reporting that one is the
// break, and would let the series' last sample stand for it for as long.
// Zero until there are two points.
func (r *ring) spacing() time.Duration {
	n := r.next
	if r.full {
		n = len(r.pts)
	}
	var ds [spacings]time.Duration
	k := 0
	for i := 1; i < n && k < spacings; i++ {
		newer := r.pts[(r.next-i+len(r.pts))%len(r.pts)]
		older := r.pts[(r.next-i-1+len(r.pts))%len(r.pts)]
		ds[k] = max(newer.Time.Sub(older.Time), 0)
		k++
	}
	if k == 0 {
		return 0
	}
	slices.Sort(ds[:k])
	return ds[(k-1)/2]
}

// Window holds recent samples of every instance and node. It is safe for
// concurrent use.
type Window struct {
	span     time.Duration
	interval time.Duration
	size     int // points of a new ring: span at interval
	limit    int // points a ring may grow to: span at minSpacing

	mu        sync.RWMutex
	instances map[string]*ring // ns/name
	nodes     map[string]*ring
	cpuLimit  map[string]float64
	nodeCPU   map[string]float64
	listeners []func(Report)
}

// NewWindow keeps span of history. interval is the resolution: the
// sampling interval the rings are first sized for (they grow for agents
// that sample faster) and the width of an App's slots.
func NewWindow(span, interval time.Duration) *Window {
	size := max(int(span/interval), 2)
	return &Window{
		span: span, interval: interval, size: size, limit: max(int(span/minSpacing), size),
		instances: map[string]*ring{}, nodes: map[string]*ring{},
		cpuLimit: map[string]float64{}, nodeCPU: map[string]float64{},
	}
}

// Interval is the window's resolution: the width of an App's slots, and
// the sampling interval assumed of a series until it has two points.
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
	nr.add(nr.knownCPU(r.Node.Point, w.span), w.span, w.limit)
	w.nodeCPU[r.Node.Node] = r.Node.CPUCapacity
	for _, s := range r.Instances {
		key := s.Namespace + "/" + s.Name
		ir, ok := w.instances[key]
		if !ok {
			ir = newRing(w.size)
			w.instances[key] = ir
		}
		ir.meta = s
		ir.add(ir.knownCPU(s.Point, w.span), w.span, w.limit)
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

// since returns r's points at or after t and within the window's span of
// its newest (a ring sized for faster sampling holds more).
func (w *Window) since(r *ring, t time.Time) []Point {
	if oldest := r.touch.Add(-w.span); t.Before(oldest) {
		t = oldest
	}
	return r.since(t)
}

// every is how often r's series is sampled.
func (w *Window) every(r *ring) time.Duration {
	if d := r.spacing(); d > 0 {
		return d
	}
	return w.interval
}

// Instance returns an instance's points since t.
func (w *Window) Instance(ns, name string, since time.Time) []Point {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if r, ok := w.instances[ns+"/"+name]; ok {
		return w.since(r, since)
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

// InstanceInterval is how often an instance is sampled, as the median
// gap between its newest points (its agent's --sample-interval, which
// the reports do not carry; one break in reporting does not change it);
// the window's interval until there are two.
// It is zero for an instance the window does not hold.
func (w *Window) InstanceInterval(ns, name string) time.Duration {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if r, ok := w.instances[ns+"/"+name]; ok {
		return w.every(r)
	}
	return 0
}

// Node returns a node's points since t.
func (w *Window) Node(name string, since time.Time) []Point {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if r, ok := w.nodes[name]; ok {
		return w.since(r, since)
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

// App aggregates the instances of an App since t, one point per slot of
// the window's interval that holds a sample of any of them. Each point
// sums, over the App's instances, the newest sample of each taken before
// the slot ends, if that sample still stands for its instance during the
// slot (its next was not yet due when the slot began); Instances counts
// them. So an instance counts once per slot, and every slot has every
// instance still reporting, also when their agents sample at other
// moments and a slot boundary falls between two nodes' samples. An
// instance whose CPU is not known yet (its first sample) counts in CPU at
// the mean of the others; a point with none known is CPUUnknown. The
// second result is the summed CPU limit (in cores) of the instances the
// newest point counts.
func (w *Window) App(ns, app string, since time.Time) ([]Point, float64) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	type member struct {
		key   string
		pts   []Point
		every time.Duration
	}
	var members []member
	slotSet := map[int64]bool{}
	for key, r := range w.instances {
		if r.meta.Namespace != ns || r.meta.App != app {
			continue
		}
		every := w.every(r)
		// From one interval back: a sample before t may stand for its
		// instance in the first slot.
		pts := w.since(r, since.Add(-every))
		for _, p := range pts {
			if !p.Time.Before(since) {
				slotSet[p.Time.Truncate(w.interval).UnixNano()] = true
			}
		}
		members = append(members, member{key, pts, every})
	}
	// In a fixed order, so that the sums come out the same every time.
	sort.Slice(members, func(i, j int) bool { return members[i].key < members[j].key })
	slots := make([]int64, 0, len(slotSet))
	for s := range slotSet {
		slots = append(slots, s)
	}
	slices.Sort(slots)
	out := make([]Point, 0, len(slots))
	next := make([]int, len(members)) // per member, its first point not before the slot's end
	var limit float64
	for k, slot := range slots {
		start := time.Unix(0, slot).UTC()
		end := start.Add(w.interval)
		a := Point{Time: start}
		cpuKnown := 0
		for m, mem := range members {
			j := next[m]
			for j < len(mem.pts) && mem.pts[j].Time.Before(end) {
				j++
			}
			next[m] = j
			if j == 0 {
				continue
			}
			p := mem.pts[j-1]
			if p.Time.Add(mem.every).Before(start) {
				continue // stopped reporting
			}
			if !p.CPUUnknown {
				a.CPU += p.CPU
				cpuKnown++
			}
			a.Memory += p.Memory
			a.MemoryLimit += p.MemoryLimit
			a.RxBytes += p.RxBytes
			a.TxBytes += p.TxBytes
			a.Restarts += p.Restarts
			a.Instances++
			if k == len(slots)-1 {
				limit += w.cpuLimit[mem.key]
			}
		}
		a.CPUKnown = cpuKnown
		switch {
		case cpuKnown == 0 && a.Instances > 0:
			a.CPUUnknown = true
		case cpuKnown < a.Instances:
			// An instance with no CPU known yet counts at the others'
			// mean, so that CPU per instance is theirs, not lowered.
			a.CPU *= float64(a.Instances) / float64(cpuKnown)
		}
		out = append(out, a)
	}
	return out, limit
}

// Series counts the series held, for the window's own memory reporting.
func (w *Window) Series() (instances, nodes int) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return len(w.instances), len(w.nodes)
}
