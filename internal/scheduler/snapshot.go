package scheduler

import (
	"maps"
	"slices"
	"strconv"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// NodeInfo is one node as the scheduler sees it: what it offers and what is
// already placed on it.
type NodeInfo struct {
	Name     string
	Labels   map[string]string
	Ready    bool
	Cordoned bool

	// Allocatable is what instances may reserve in total. An Instances of
	// zero means no limit on the count.
	Allocatable v1.Capacity
	// Placed is what the instances bound to the node reserve.
	Placed v1.Capacity
	// HostPorts counts the placed instances publishing each port.
	HostPorts map[HostPort]int

	// present is false for a node that only placed instances refer to:
	// one not registered yet, or deleted while its instances remain.
	present bool
}

// FreeCPU is the CPU not yet reserved; negative when overcommitted.
func (n *NodeInfo) FreeCPU() v1.CPU { return n.Allocatable.CPU - n.Placed.CPU }

// FreeMemory is the memory not yet reserved; negative when overcommitted.
func (n *NodeInfo) FreeMemory() v1.Bytes { return n.Allocatable.Memory - n.Placed.Memory }

// placement is what one instance holds on one node.
type placement struct {
	node   int32
	app    string
	cpu    v1.CPU
	memory v1.Bytes
	ports  []HostPort
}

// Snapshot holds every node with its capacity and the instances placed on
// it. Place reads it; the owner updates it as nodes and instances change
// (SetNode, SetInstance, Assign, Release). Accounting is keyed by instance,
// so applying the same instance twice, or a bind the snapshot already
// assumed, never counts it twice.
//
// A Snapshot is not safe for concurrent use: Place memoizes which nodes
// match each set of constraints.
type Snapshot struct {
	nodes   []NodeInfo
	byName  map[string]int32
	freeIdx []int32 // slots of forgotten nodes, for reuse
	placed  map[string]placement
	// apps counts, per app, its instances on each node (by slot), for
	// spreading.
	apps map[string]map[int32]int32

	// Memoized candidate lists: present nodes, all of them or those
	// matching a constraint set. Cleared when a node appears, goes or
	// changes labels.
	all      []int32
	eligible map[string][]int32
	keyBuf   []byte
	sameApp  []int32 // scratch: per-slot instance count of the app being placed
}

// maxEligibleSets bounds the constraint memo; past it the memo starts over.
const maxEligibleSets = 1024

// NewSnapshot builds a snapshot from lists of nodes and instances.
func NewSnapshot(nodes []*v1.Node, instances []*v1.Instance) *Snapshot {
	s := &Snapshot{
		byName:   make(map[string]int32, len(nodes)),
		placed:   make(map[string]placement, len(instances)),
		apps:     map[string]map[int32]int32{},
		eligible: map[string][]int32{},
	}
	s.nodes = make([]NodeInfo, 0, len(nodes))
	for _, n := range nodes {
		s.SetNode(n)
	}
	for _, i := range instances {
		s.SetInstance(i)
	}
	return s
}

// Len is the number of registered nodes.
func (s *Snapshot) Len() int { return len(s.candidates(nil)) }

// Node returns a copy of the named node's info.
func (s *Snapshot) Node(name string) (NodeInfo, bool) {
	i, ok := s.byName[name]
	if !ok || !s.nodes[i].present {
		return NodeInfo{}, false
	}
	n := s.nodes[i]
	n.HostPorts = maps.Clone(n.HostPorts)
	return n, true
}

// AppCount is how many instances of app are placed on the named node.
func (s *Snapshot) AppCount(node, app string) int {
	i, ok := s.byName[node]
	if !ok {
		return 0
	}
	return int(s.apps[app][i])
}

// NodeOf returns the node an instance is placed on, if any.
func (s *Snapshot) NodeOf(key string) (string, bool) {
	p, ok := s.placed[key]
	if !ok {
		return "", false
	}
	return s.nodes[p.node].Name, true
}

// SetNode adds or updates a node. It reports whether anything that
// placement depends on changed (readiness, cordon, capacity, labels), so the
// caller knows whether instances that did not fit before deserve another
// try.
func (s *Snapshot) SetNode(node *v1.Node) (changed bool) {
	i := s.slot(node.Metadata.Name)
	n := &s.nodes[i]
	alloc := allocatable(node)
	changed = !n.present || n.Ready != node.Status.Ready || n.Cordoned != node.Spec.Unschedulable ||
		n.Allocatable != alloc || !maps.Equal(n.Labels, node.Metadata.Labels)
	if !n.present || !maps.Equal(n.Labels, node.Metadata.Labels) {
		s.forgetCandidates()
	}
	n.present = true
	n.Ready = node.Status.Ready
	n.Cordoned = node.Spec.Unschedulable
	n.Allocatable = alloc
	n.Labels = node.Metadata.Labels
	return changed
}

// allocatable is what a node offers. An agent that reports only its
// capacity offers all of it; each field falls back on its own.
func allocatable(node *v1.Node) v1.Capacity {
	a, c := node.Status.Allocatable, node.Status.Capacity
	if a.CPU == 0 {
		a.CPU = c.CPU
	}
	if a.Memory == 0 {
		a.Memory = c.Memory
	}
	if a.Instances == 0 {
		a.Instances = c.Instances
	}
	return a
}

// RemoveNode forgets a node. Instances still placed on it keep their
// accounting until they are released, so a node that comes back is not
// mistaken for an empty one.
func (s *Snapshot) RemoveNode(name string) {
	i, ok := s.byName[name]
	if !ok || !s.nodes[i].present {
		return
	}
	s.nodes[i].present = false
	s.forgetCandidates()
	s.maybeFree(i)
}

// SetInstance applies an instance's current state: a bound instance that
// has not finished holds its request on its node; any other releases what
// it held. It reports whether resources were released or moved, which can
// make room for instances that did not fit before.
func (s *Snapshot) SetInstance(inst *v1.Instance) (freed bool) {
	key := inst.Metadata.Key()
	var r Request
	switch {
	case counts(inst):
		r = RequestFor(inst)
	case holdsPorts(inst):
		// Finished: its CPU and memory are free, but its network
		// namespace, and the port mapping in it, stay on the node
		// until the instance is deleted.
		r = Request{HostPorts: mappedHostPorts(inst)}
	default:
		return s.Release(key)
	}
	p, had := s.placed[key]
	if had && s.nodes[p.node].Name == inst.Spec.Node && p.cpu == r.CPU && p.memory == r.Memory && p.app == r.App && slices.Equal(p.ports, r.HostPorts) {
		return false
	}
	s.Assign(key, inst.Spec.Node, &r)
	return had
}

// Assign records that the instance key holds r on the named node,
// replacing whatever the key held before. A node not (yet) registered is
// tracked so that its accounting is right when it appears.
func (s *Snapshot) Assign(key, node string, r *Request) {
	if _, had := s.placed[key]; had {
		s.Release(key)
	}
	i := s.slot(node)
	n := &s.nodes[i]
	n.Placed.CPU += r.CPU
	n.Placed.Memory += r.Memory
	n.Placed.Instances++
	p := placement{node: i, app: r.App, cpu: r.CPU, memory: r.Memory}
	if len(r.HostPorts) > 0 {
		p.ports = slices.Clone(r.HostPorts)
		if n.HostPorts == nil {
			n.HostPorts = map[HostPort]int{}
		}
		for _, hp := range p.ports {
			n.HostPorts[hp]++
		}
	}
	if r.App != "" {
		m := s.apps[r.App]
		if m == nil {
			m = map[int32]int32{}
			s.apps[r.App] = m
		}
		m[i]++
	}
	s.placed[key] = p
}

// Release gives back what the instance key held; it reports whether it
// held anything.
func (s *Snapshot) Release(key string) bool {
	p, ok := s.placed[key]
	if !ok {
		return false
	}
	delete(s.placed, key)
	n := &s.nodes[p.node]
	n.Placed.CPU -= p.cpu
	n.Placed.Memory -= p.memory
	n.Placed.Instances--
	for _, hp := range p.ports {
		if n.HostPorts[hp]--; n.HostPorts[hp] <= 0 {
			delete(n.HostPorts, hp)
		}
	}
	if p.app != "" {
		m := s.apps[p.app]
		if m[p.node]--; m[p.node] <= 0 {
			delete(m, p.node)
			if len(m) == 0 {
				delete(s.apps, p.app)
			}
		}
	}
	s.maybeFree(p.node)
	return true
}

// slot returns the index of the named node, making an empty, not present
// entry when the name is new.
func (s *Snapshot) slot(name string) int32 {
	if i, ok := s.byName[name]; ok {
		return i
	}
	var i int32
	if k := len(s.freeIdx); k > 0 {
		i = s.freeIdx[k-1]
		s.freeIdx = s.freeIdx[:k-1]
		s.nodes[i] = NodeInfo{Name: name}
	} else {
		i = int32(len(s.nodes))
		s.nodes = append(s.nodes, NodeInfo{Name: name})
		s.sameApp = append(s.sameApp, 0)
	}
	s.byName[name] = i
	return i
}

// maybeFree recycles the slot of a node that is gone and holds nothing.
func (s *Snapshot) maybeFree(i int32) {
	n := &s.nodes[i]
	if n.present || n.Placed.Instances > 0 {
		return
	}
	delete(s.byName, n.Name)
	s.nodes[i] = NodeInfo{}
	s.freeIdx = append(s.freeIdx, i)
}

func (s *Snapshot) forgetCandidates() {
	s.all = nil
	clear(s.eligible)
}

// candidates returns the slots of present nodes that match every
// constraint, memoized per constraint set. Label matching is the costliest
// filter and its answer only changes when nodes come, go or are relabelled,
// so Place checks it once per constraint set rather than once per
// placement.
func (s *Snapshot) candidates(cs []v1.Constraint) []int32 {
	if s.all == nil {
		s.all = make([]int32, 0, len(s.nodes))
		for i := range s.nodes {
			if s.nodes[i].present {
				s.all = append(s.all, int32(i))
			}
		}
	}
	if len(cs) == 0 {
		return s.all
	}
	s.keyBuf = constraintKey(s.keyBuf[:0], cs)
	if l, ok := s.eligible[string(s.keyBuf)]; ok {
		return l
	}
	l := make([]int32, 0, len(s.all))
	for _, i := range s.all {
		if matchAll(s.nodes[i].Labels, cs) {
			l = append(l, i)
		}
	}
	if len(s.eligible) >= maxEligibleSets {
		clear(s.eligible)
	}
	s.eligible[string(s.keyBuf)] = l
	return l
}

// constraintKey appends an unambiguous encoding of a constraint set:
// every string is prefixed with its length, since labels and values may
// hold any byte (separators alone let {zone in ["a\x01b"]} share a key
// with {zone in [a, b]}, and one App's placement decide the other's).
func constraintKey(b []byte, cs []v1.Constraint) []byte {
	str := func(b []byte, s string) []byte {
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, ':')
		return append(b, s...)
	}
	b = strconv.AppendInt(b, int64(len(cs)), 10)
	for _, c := range cs {
		b = append(b, '|')
		b = str(b, c.Label)
		b = str(b, c.Op)
		b = str(b, c.Value)
		b = strconv.AppendInt(b, int64(len(c.Values)), 10)
		for _, v := range c.Values {
			b = str(b, v)
		}
	}
	return b
}

func matchAll(labels map[string]string, cs []v1.Constraint) bool {
	for _, c := range cs {
		if !c.Matches(labels) {
			return false
		}
	}
	return true
}
