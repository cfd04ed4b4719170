package scheduler

import (
	"strings"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// A Filter decides whether a node can take a request at all. Fits must be a
// pure function of its arguments. When it says no, Why says what stands in
// the way, in words a user can act on; nodes turned down with the same
// words are counted together in the placement error.
type Filter struct {
	Name string
	Fits func(n *NodeInfo, r *Request) bool
	Why  func(n *NodeInfo, r *Request) string
}

// Filters are the feasibility checks in the order they run. A node is
// reported under the first one it fails, so the order puts what the user
// must fix first (the node itself, then where the app asked to go, then
// room): a node with the wrong labels is reported as not matching, not as
// full.
var Filters = []Filter{
	{Name: "ready", Fits: Ready, Why: func(*NodeInfo, *Request) string { return "not ready" }},
	{Name: "cordon", Fits: Schedulable, Why: func(*NodeInfo, *Request) string { return "cordoned (unschedulable)" }},
	{Name: "constraints", Fits: MatchesConstraints, Why: whyConstraints},
	{Name: "host-ports", Fits: HostPortsFree, Why: whyHostPorts},
	{Name: "instances", Fits: FitsInstanceCount, Why: func(*NodeInfo, *Request) string { return "at their instance limit" }},
	{Name: "memory", Fits: FitsMemory, Why: func(*NodeInfo, *Request) string { return "insufficient memory" }},
	{Name: "cpu", Fits: FitsCPU, Why: func(*NodeInfo, *Request) string { return "insufficient cpu" }},
}

// Ready passes nodes whose agent reports them ready.
func Ready(n *NodeInfo, _ *Request) bool { return n.Ready }

// Schedulable passes nodes that are not cordoned.
func Schedulable(n *NodeInfo, _ *Request) bool { return !n.Cordoned }

// FitsCPU passes nodes whose unreserved CPU covers the request. A request
// of zero reserves nothing and fits even an overcommitted node.
func FitsCPU(n *NodeInfo, r *Request) bool {
	return r.CPU <= 0 || r.CPU <= n.Allocatable.CPU-n.Placed.CPU
}

// FitsMemory passes nodes whose unreserved memory covers the request.
func FitsMemory(n *NodeInfo, r *Request) bool {
	return r.Memory <= 0 || r.Memory <= n.Allocatable.Memory-n.Placed.Memory
}

// FitsInstanceCount passes nodes below their instance limit, if they have
// one.
func FitsInstanceCount(n *NodeInfo, _ *Request) bool {
	return n.Allocatable.Instances == 0 || n.Placed.Instances < n.Allocatable.Instances
}

// MatchesConstraints passes nodes whose labels satisfy every constraint.
func MatchesConstraints(n *NodeInfo, r *Request) bool { return matchAll(n.Labels, r.Constraints) }

// HostPortsFree passes nodes where none of the requested host ports is
// taken.
func HostPortsFree(n *NodeInfo, r *Request) bool {
	if len(r.HostPorts) == 0 || len(n.HostPorts) == 0 {
		return true
	}
	for _, p := range r.HostPorts {
		if n.HostPorts[p] > 0 {
			return false
		}
	}
	return true
}

// feasible is every filter but MatchesConstraints, which Place applies
// through the snapshot's memo. The calls are direct so that the compiler
// can inline them in Place's loop; filter_test checks that this agrees
// with Filters.
func feasible(n *NodeInfo, r *Request) bool {
	return Ready(n, r) && Schedulable(n, r) && HostPortsFree(n, r) &&
		FitsInstanceCount(n, r) && FitsMemory(n, r) && FitsCPU(n, r)
}

func whyConstraints(n *NodeInfo, r *Request) string {
	for _, c := range r.Constraints {
		if !c.Matches(n.Labels) {
			return "did not match constraint " + ConstraintString(c)
		}
	}
	return "did not match the constraints"
}

func whyHostPorts(n *NodeInfo, r *Request) string {
	var taken []string
	for _, p := range r.HostPorts {
		if n.HostPorts[p] > 0 {
			taken = append(taken, p.String())
		}
	}
	if len(taken) == 1 {
		return "host port " + taken[0] + " already in use"
	}
	return "host ports " + strings.Join(taken, ", ") + " already in use"
}

// ConstraintString writes a constraint the way a user would: "disk=ssd",
// "zone in (a,b)", "gpu exists", "gpu !exists".
func ConstraintString(c v1.Constraint) string {
	switch c.Op {
	case v1.OpEqual, "", "==":
		return c.Label + "=" + c.Value
	case v1.OpNotEqual:
		return c.Label + "!=" + c.Value
	case v1.OpIn, v1.OpNotIn:
		return c.Label + " " + c.Op + " (" + strings.Join(c.Values, ",") + ")"
	case v1.OpExists, v1.OpNotExists:
		return c.Label + " " + c.Op
	}
	return c.Label + " " + c.Op + " " + c.Value
}
