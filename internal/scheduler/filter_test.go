package scheduler

import (
	"math/rand/v2"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

func TestFilters(t *testing.T) {
	free := NodeInfo{
		Name: "n1", Ready: true,
		Labels:      map[string]string{"disk": "ssd", "zone": "a"},
		Allocatable: v1.Capacity{CPU: 2000, Memory: 4 * gi, Instances: 10},
		Placed:      v1.Capacity{CPU: 1500, Memory: 3 * gi, Instances: 9},
		HostPorts:   map[HostPort]int{{Port: 8080, Protocol: "tcp"}: 1},
	}
	with := func(f func(n *NodeInfo)) NodeInfo {
		n := free
		f(&n)
		return n
	}
	tests := []struct {
		name   string
		filter func(*NodeInfo, *Request) bool
		node   NodeInfo
		req    Request
		want   bool
	}{
		{"a ready node passes the ready filter", Ready, free, Request{}, true},
		{"a node that is not ready fails the ready filter", Ready, with(func(n *NodeInfo) { n.Ready = false }), Request{}, false},
		{"an uncordoned node is schedulable", Schedulable, free, Request{}, true},
		{"a cordoned node is not schedulable", Schedulable, with(func(n *NodeInfo) { n.Cordoned = true }), Request{}, false},

		{"cpu that fits exactly in what is left passes", FitsCPU, free, Request{CPU: 500}, true},
		{"one millicore more than is left fails", FitsCPU, free, Request{CPU: 501}, false},
		{"a zero cpu request fits an overcommitted node", FitsCPU, with(func(n *NodeInfo) { n.Placed.CPU = 3000 }), Request{CPU: 0}, true},
		{"any cpu request fails on an overcommitted node", FitsCPU, with(func(n *NodeInfo) { n.Placed.CPU = 3000 }), Request{CPU: 1}, false},

		{"memory that fits exactly in what is left passes", FitsMemory, free, Request{Memory: gi}, true},
		{"one byte more memory than is left fails", FitsMemory, free, Request{Memory: gi + 1}, false},
		{"memory on a node offering none fails", FitsMemory, with(func(n *NodeInfo) { n.Allocatable.Memory = 0; n.Placed.Memory = 0 }), Request{Memory: 1}, false},

		{"a node below its instance limit passes", FitsInstanceCount, free, Request{}, true},
		{"a node at its instance limit fails", FitsInstanceCount, with(func(n *NodeInfo) { n.Placed.Instances = 10 }), Request{}, false},
		{"a node without an instance limit always passes", FitsInstanceCount, with(func(n *NodeInfo) { n.Allocatable.Instances = 0; n.Placed.Instances = 500 }), Request{}, true},

		{"no constraints match any node", MatchesConstraints, free, Request{}, true},
		{"an equal constraint on a matching label passes", MatchesConstraints, free, Request{Constraints: []v1.Constraint{{Label: "disk", Op: "=", Value: "ssd"}}}, true},
		{"an equal constraint on another value fails", MatchesConstraints, free, Request{Constraints: []v1.Constraint{{Label: "disk", Op: "=", Value: "hdd"}}}, false},
		{"every constraint must match", MatchesConstraints, free, Request{Constraints: []v1.Constraint{{Label: "disk", Value: "ssd"}, {Label: "zone", Op: "in", Values: []string{"b", "c"}}}}, false},
		{"a not-in constraint passes when the label is elsewhere", MatchesConstraints, free, Request{Constraints: []v1.Constraint{{Label: "zone", Op: "notin", Values: []string{"b", "c"}}}}, true},
		{"an exists constraint on a missing label fails", MatchesConstraints, free, Request{Constraints: []v1.Constraint{{Label: "gpu", Op: "exists"}}}, false},
		{"a not-exists constraint on a missing label passes", MatchesConstraints, free, Request{Constraints: []v1.Constraint{{Label: "gpu", Op: "!exists"}}}, true},
		{"a node without labels fails an equal constraint", MatchesConstraints, with(func(n *NodeInfo) { n.Labels = nil }), Request{Constraints: []v1.Constraint{{Label: "disk", Value: "ssd"}}}, false},

		{"a request without host ports passes", HostPortsFree, free, Request{}, true},
		{"a free host port passes", HostPortsFree, free, Request{HostPorts: []HostPort{{Port: 9090, Protocol: "tcp"}}}, true},
		{"a taken host port fails", HostPortsFree, free, Request{HostPorts: []HostPort{{Port: 9090, Protocol: "tcp"}, {Port: 8080, Protocol: "tcp"}}}, false},
		{"the same port number over udp does not conflict with tcp", HostPortsFree, free, Request{HostPorts: []HostPort{{Port: 8080, Protocol: "udp"}}}, true},
		{"a port whose holder left is free again", HostPortsFree, with(func(n *NodeInfo) { n.HostPorts = map[HostPort]int{{Port: 8080, Protocol: "tcp"}: 0} }), Request{HostPorts: []HostPort{{Port: 8080, Protocol: "tcp"}}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, r := tt.node, tt.req
			if got := tt.filter(&n, &r); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFilterReasons(t *testing.T) {
	n := NodeInfo{
		Labels:    map[string]string{"disk": "hdd"},
		HostPorts: map[HostPort]int{{Port: 80, Protocol: "tcp"}: 1, {Port: 53, Protocol: "udp"}: 2},
	}
	tests := []struct {
		name   string
		filter string
		req    Request
		want   string
	}{
		{"a not-ready node says so", "ready", Request{}, "not ready"},
		{"a cordoned node says so", "cordon", Request{}, "cordoned (unschedulable)"},
		{"a constraint mismatch names the first failing constraint", "constraints",
			Request{Constraints: []v1.Constraint{{Label: "disk", Op: "!=", Value: "ssd"}, {Label: "disk", Value: "ssd"}, {Label: "gpu", Op: "exists"}}},
			"did not match constraint disk=ssd"},
		{"an in constraint lists its values", "constraints",
			Request{Constraints: []v1.Constraint{{Label: "disk", Op: "in", Values: []string{"ssd", "nvme"}}}},
			"did not match constraint disk in (ssd,nvme)"},
		{"an exists constraint reads as such", "constraints",
			Request{Constraints: []v1.Constraint{{Label: "gpu", Op: "exists"}}},
			"did not match constraint gpu exists"},
		{"one taken host port is named", "host-ports",
			Request{HostPorts: []HostPort{{Port: 80, Protocol: "tcp"}, {Port: 443, Protocol: "tcp"}}},
			"host port 80/tcp already in use"},
		{"several taken host ports are all named", "host-ports",
			Request{HostPorts: []HostPort{{Port: 80, Protocol: "tcp"}, {Port: 53, Protocol: "udp"}}},
			"host ports 80/tcp, 53/udp already in use"},
		{"a full node says it is at its limit", "instances", Request{}, "at their instance limit"},
		{"memory shortage is named", "memory", Request{}, "insufficient memory"},
		{"cpu shortage is named", "cpu", Request{}, "insufficient cpu"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := filterNamed(t, tt.filter)
			if got := f.Why(&n, &tt.req); got != tt.want {
				t.Errorf("Why = %q, want %q", got, tt.want)
			}
		})
	}
}

func filterNamed(t *testing.T, name string) Filter {
	t.Helper()
	for _, f := range Filters {
		if f.Name == name {
			return f
		}
	}
	t.Fatalf("no filter named %q", name)
	return Filter{}
}

// Place runs an inlined copy of the filter chain (feasible) plus the
// memoized constraint check; this makes sure the copy says what the named
// filters say, on many random nodes and requests.
func TestFeasibleAgreesWithFilters(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	labels := []map[string]string{nil, {"disk": "ssd"}, {"disk": "hdd", "zone": "a"}, {"zone": "b", "gpu": "yes"}}
	constraints := [][]v1.Constraint{nil, {{Label: "disk", Value: "ssd"}}, {{Label: "gpu", Op: "!exists"}}, {{Label: "zone", Op: "in", Values: []string{"a", "b"}}}}
	ports := []HostPort{{Port: 80, Protocol: "tcp"}, {Port: 80, Protocol: "udp"}, {Port: 443, Protocol: "tcp"}}
	for i := range 20000 {
		n := NodeInfo{
			Ready:       rng.IntN(5) > 0,
			Cordoned:    rng.IntN(5) == 0,
			Labels:      labels[rng.IntN(len(labels))],
			Allocatable: v1.Capacity{CPU: v1.CPU(rng.IntN(4000)), Memory: v1.Bytes(rng.IntN(8)) * gi, Instances: rng.IntN(4)},
			Placed:      v1.Capacity{CPU: v1.CPU(rng.IntN(4000)), Memory: v1.Bytes(rng.IntN(8)) * gi, Instances: rng.IntN(4)},
		}
		if rng.IntN(2) == 0 {
			n.HostPorts = map[HostPort]int{ports[rng.IntN(len(ports))]: 1}
		}
		r := Request{
			CPU:         v1.CPU(rng.IntN(2000)),
			Memory:      v1.Bytes(rng.IntN(4)) * gi,
			Constraints: constraints[rng.IntN(len(constraints))],
		}
		if rng.IntN(2) == 0 {
			r.HostPorts = []HostPort{ports[rng.IntN(len(ports))]}
		}
		all := true
		for _, f := range Filters {
			all = all && f.Fits(&n, &r)
		}
		if got := feasible(&n, &r) && MatchesConstraints(&n, &r); got != all {
			t.Fatalf("case %d: feasible says %v, Filters say %v\nnode %+v\nrequest %+v", i, got, all, n, r)
		}
	}
}
