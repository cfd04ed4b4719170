package scheduler

import (
	"errors"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

func TestPlace(t *testing.T) {
	ssd := []v1.Constraint{{Label: "disk", Value: "ssd"}}
	tests := []struct {
		name  string
		nodes []*v1.Node
		insts []*v1.Instance
		req   Request
		want  string
	}{
		{
			name:  "bin-pack picks the fuller of two nodes that fit",
			nodes: []*v1.Node{newNode("a", 4000, 8*gi), newNode("b", 4000, 8*gi)},
			insts: []*v1.Instance{boundTo(newInstance("x", "other", 1000, 2*gi), "b")},
			req:   Request{CPU: 500, Memory: gi},
			want:  "b",
		},
		{
			name:  "bin-pack skips the fuller node when the request does not fit there",
			nodes: []*v1.Node{newNode("a", 4000, 8*gi), newNode("b", 4000, 8*gi)},
			insts: []*v1.Instance{boundTo(newInstance("x", "other", 1000, 7*gi+512*mi), "b")},
			req:   Request{CPU: 500, Memory: gi},
			want:  "a",
		},
		{
			name:  "equal scores go to the node whose name sorts first",
			nodes: []*v1.Node{newNode("c", 4000, 8*gi), newNode("a", 4000, 8*gi), newNode("b", 4000, 8*gi)},
			req:   Request{CPU: 500, Memory: gi},
			want:  "a",
		},
		{
			name:  "spread picks the node with fewer instances of the app, even if fuller",
			nodes: []*v1.Node{newNode("a", 4000, 8*gi), newNode("b", 4000, 8*gi)},
			insts: []*v1.Instance{
				boundTo(newInstance("w1", "web", 100, 128*mi), "a"),
				boundTo(newInstance("o1", "other", 2000, 4*gi), "b"),
			},
			req:  Request{App: "default/web", CPU: 100, Memory: 128 * mi, Placement: v1.PlacementSpread},
			want: "b",
		},
		{
			name:  "spread picks the emptier node when app counts are equal",
			nodes: []*v1.Node{newNode("a", 4000, 8*gi), newNode("b", 4000, 8*gi)},
			insts: []*v1.Instance{boundTo(newInstance("o1", "other", 2000, 4*gi), "a")},
			req:   Request{App: "default/web", CPU: 100, Memory: 128 * mi, Placement: v1.PlacementSpread},
			want:  "b",
		},
		{
			name:  "a constraint restricts the choice to matching nodes",
			nodes: []*v1.Node{newNode("a", 4000, 8*gi, "disk", "hdd"), newNode("b", 4000, 8*gi, "disk", "ssd")},
			insts: []*v1.Instance{boundTo(newInstance("x", "other", 1000, 2*gi), "a")},
			req:   Request{CPU: 500, Memory: gi, Constraints: ssd},
			want:  "b",
		},
		{
			name:  "a failed instance no longer holds its resources",
			nodes: []*v1.Node{newNode("a", 1000, 1*gi)},
			insts: []*v1.Instance{withPhase(boundTo(newInstance("x", "other", 1000, gi), "a"), v1.PhaseFailed)},
			req:   Request{CPU: 1000, Memory: gi},
			want:  "a",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSnapshot(tt.nodes, tt.insts)
			got, err := Place(s, &tt.req)
			if err != nil {
				t.Fatalf("Place: %v", err)
			}
			if got != tt.want {
				t.Errorf("placed on %s, want %s", got, tt.want)
			}
		})
	}
}

func TestPlaceErrors(t *testing.T) {
	notReady := newNode("down", 4000, 8*gi)
	notReady.Status.Ready = false
	cordoned := newNode("cordoned", 4000, 8*gi)
	cordoned.Spec.Unschedulable = true
	limited := newNode("limited", 4000, 8*gi)
	limited.Status.Allocatable.Instances = 1
	web := newInstance("web", "web", 100, 128*mi)
	web.Spec.Template.Ports = []v1.Port{{Port: 80, Protocol: "http", HostPort: 8080}}

	tests := []struct {
		name  string
		nodes []*v1.Node
		insts []*v1.Instance
		req   Request
		want  string
	}{
		{
			name: "no nodes at all says to start an agent",
			req:  Request{CPU: 100},
			want: "0/0 nodes available: no nodes are registered; start a gantry agent to add one",
		},
		{
			name: "memory and constraint shortfalls are counted per reason, most common first",
			nodes: []*v1.Node{
				newNode("a", 4000, gi, "disk", "ssd"), newNode("b", 4000, gi, "disk", "ssd"),
				newNode("c", 4000, 8*gi, "disk", "hdd"),
			},
			insts: []*v1.Instance{
				boundTo(newInstance("x", "other", 100, 768*mi), "a"),
				boundTo(newInstance("y", "other", 100, 512*mi), "b"),
			},
			req:  Request{Memory: 768 * mi, Constraints: []v1.Constraint{{Label: "disk", Value: "ssd"}}},
			want: "0/3 nodes available: 2 insufficient memory (need 768Mi, most free 512Mi), 1 did not match constraint disk=ssd",
		},
		{
			name: "each node is counted under the first constraint it fails",
			nodes: []*v1.Node{
				newNode("a", 4000, gi, "disk", "hdd", "zone", "a"), newNode("b", 4000, gi, "disk", "hdd", "zone", "c"),
				newNode("c", 4000, gi, "disk", "ssd", "zone", "c"), newNode("d", 4000, gi, "disk", "ssd"),
			},
			req:  Request{Constraints: []v1.Constraint{{Label: "disk", Value: "ssd"}, {Label: "zone", Op: "in", Values: []string{"a", "b"}}}},
			want: "0/4 nodes available: 2 did not match constraint disk=ssd, 2 did not match constraint zone in (a,b)",
		},
		{
			name:  "cpu shortfall names the request and the most free cpu",
			nodes: []*v1.Node{newNode("a", 2000, 8*gi), newNode("b", 1000, 8*gi)},
			insts: []*v1.Instance{boundTo(newInstance("x", "other", 1750, 0), "a")},
			req:   Request{CPU: 1500},
			want:  "0/2 nodes available: 2 insufficient cpu (need 1500m, most free 1)",
		},
		{
			name:  "an overcommitted node counts as having nothing free",
			nodes: []*v1.Node{newNode("a", 1000, gi)},
			insts: []*v1.Instance{boundTo(newInstance("x", "other", 100, 2*gi), "a")},
			req:   Request{Memory: mi},
			want:  "0/1 nodes available: 1 insufficient memory (need 1Mi, most free 0)",
		},
		{
			name:  "odd sizes are rounded to one decimal",
			nodes: []*v1.Node{newNode("a", 1000, gi+gi/3)},
			req:   Request{Memory: 2 * gi},
			want:  "0/1 nodes available: 1 insufficient memory (need 2Gi, most free 1.3Gi)",
		},
		{
			name:  "node states, ports and limits each get their own reason",
			nodes: []*v1.Node{notReady, cordoned, limited, newNode("ported", 4000, 8*gi)},
			insts: []*v1.Instance{
				boundTo(newInstance("x", "other", 100, mi), "limited"),
				boundTo(web, "ported"),
			},
			req:  Request{HostPorts: []HostPort{{Port: 8080, Protocol: "tcp"}}},
			want: "0/4 nodes available: 1 at their instance limit, 1 cordoned (unschedulable), 1 host port 8080/tcp already in use, 1 not ready",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSnapshot(tt.nodes, tt.insts)
			node, err := Place(s, &tt.req)
			if err == nil {
				t.Fatalf("placed on %s, want an error", node)
			}
			if !errors.Is(err, ErrUnschedulable) {
				t.Errorf("errors.Is(err, ErrUnschedulable) is false for %v", err)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error text\n got: %s\nwant: %s", got, tt.want)
			}
		})
	}
}

func TestSnapshotAccounting(t *testing.T) {
	t.Run("bound instances count against their node, pending and finished ones do not", func(t *testing.T) {
		s := NewSnapshot([]*v1.Node{newNode("a", 4000, 8*gi)}, []*v1.Instance{
			boundTo(newInstance("run", "web", 100, 100*mi), "a"),
			withPhase(boundTo(newInstance("done", "web", 200, 200*mi), "a"), v1.PhaseSucceeded),
			withPhase(boundTo(newInstance("fail", "web", 300, 300*mi), "a"), v1.PhaseFailed),
			newInstance("pending", "web", 400, 400*mi),
		})
		n := mustNode(t, s, "a")
		if want := (v1.Capacity{CPU: 100, Memory: 100 * mi, Instances: 1}); n.Placed != want {
			t.Errorf("placed %+v, want %+v", n.Placed, want)
		}
		if got := s.AppCount("a", "default/web"); got != 1 {
			t.Errorf("app count %d, want 1", got)
		}
	})
	t.Run("applying the same instance twice counts it once", func(t *testing.T) {
		s := NewSnapshot([]*v1.Node{newNode("a", 4000, 8*gi)}, nil)
		inst := boundTo(newInstance("x", "web", 100, 100*mi), "a")
		s.SetInstance(inst)
		if freed := s.SetInstance(inst); freed {
			t.Error("second SetInstance reported freed resources")
		}
		r := RequestFor(inst)
		s.Assign("default/x", "a", &r)
		if n := mustNode(t, s, "a"); n.Placed.Instances != 1 || n.Placed.CPU != 100 {
			t.Errorf("placed %+v, want one instance of 100m", n.Placed)
		}
	})
	t.Run("an instance that moves or finishes frees its old node", func(t *testing.T) {
		s := NewSnapshot([]*v1.Node{newNode("a", 4000, 8*gi), newNode("b", 4000, 8*gi)}, nil)
		inst := boundTo(newInstance("x", "web", 100, 100*mi), "a")
		s.SetInstance(inst)
		moved := *inst
		moved.Spec.Node = "b"
		if !s.SetInstance(&moved) {
			t.Error("moving did not report freed resources")
		}
		if a, b := mustNode(t, s, "a"), mustNode(t, s, "b"); a.Placed.Instances != 0 || b.Placed.Instances != 1 {
			t.Errorf("after the move a holds %d and b %d instances, want 0 and 1", a.Placed.Instances, b.Placed.Instances)
		}
		if !s.SetInstance(withPhase(&moved, v1.PhaseSucceeded)) {
			t.Error("finishing did not report freed resources")
		}
		if b := mustNode(t, s, "b"); b.Placed != (v1.Capacity{}) || len(b.HostPorts) != 0 {
			t.Errorf("b still holds %+v", b.Placed)
		}
	})
	t.Run("host ports are held until their instance is released", func(t *testing.T) {
		s := NewSnapshot([]*v1.Node{newNode("a", 4000, 8*gi)}, nil)
		inst := boundTo(newInstance("x", "web", 100, 100*mi), "a")
		inst.Spec.Template.Ports = []v1.Port{{Port: 53, Protocol: "udp", HostPort: 53}, {Port: 80, HostPort: 8080}}
		s.SetInstance(inst)
		want := map[HostPort]int{{Port: 53, Protocol: "udp"}: 1, {Port: 8080, Protocol: "tcp"}: 1}
		if n := mustNode(t, s, "a"); len(n.HostPorts) != 2 || n.HostPorts[HostPort{53, "udp"}] != 1 || n.HostPorts[HostPort{8080, "tcp"}] != 1 {
			t.Errorf("host ports %v, want %v", n.HostPorts, want)
		}
		s.Release("default/x")
		if n := mustNode(t, s, "a"); len(n.HostPorts) != 0 {
			t.Errorf("host ports %v after release, want none", n.HostPorts)
		}
	})
	t.Run("a node deleted and re-registered keeps what is still placed on it", func(t *testing.T) {
		s := NewSnapshot([]*v1.Node{newNode("a", 4000, 8*gi)}, []*v1.Instance{boundTo(newInstance("x", "web", 1000, gi), "a")})
		s.RemoveNode("a")
		if _, ok := s.Node("a"); ok || s.Len() != 0 {
			t.Fatal("removed node is still listed")
		}
		s.SetNode(newNode("a", 4000, 8*gi))
		if n := mustNode(t, s, "a"); n.Placed.CPU != 1000 {
			t.Errorf("placed cpu %v after re-registering, want 1", n.Placed.CPU)
		}
	})
	t.Run("instances bound to a node not registered yet count once it registers", func(t *testing.T) {
		s := NewSnapshot(nil, []*v1.Instance{boundTo(newInstance("x", "web", 1000, gi), "late")})
		if _, err := Place(s, &Request{}); err == nil {
			t.Fatal("placed on a node that is not registered")
		}
		s.SetNode(newNode("late", 1000, 8*gi))
		if _, err := Place(s, &Request{CPU: 1}); err == nil {
			t.Error("placed 1m on a node whose cpu is all reserved")
		}
	})
	t.Run("relabelling a node changes which constraints it matches", func(t *testing.T) {
		s := NewSnapshot([]*v1.Node{newNode("a", 4000, 8*gi, "disk", "hdd")}, nil)
		r := Request{Constraints: []v1.Constraint{{Label: "disk", Value: "ssd"}}}
		if _, err := Place(s, &r); err == nil {
			t.Fatal("placed on an hdd node")
		}
		if !s.SetNode(newNode("a", 4000, 8*gi, "disk", "ssd")) {
			t.Error("relabelling did not report a change")
		}
		if got, err := Place(s, &r); err != nil || got != "a" {
			t.Errorf("Place = %q, %v; want a", got, err)
		}
	})
	t.Run("a status-only node update reports no change", func(t *testing.T) {
		n := newNode("a", 4000, 8*gi)
		s := NewSnapshot([]*v1.Node{n}, nil)
		again := *n
		again.Status.Message = "heartbeat"
		if s.SetNode(&again) {
			t.Error("an irrelevant update reported a change")
		}
	})
	t.Run("allocatable falls back to capacity field by field", func(t *testing.T) {
		n := newNode("a", 0, 0)
		n.Status.Allocatable = v1.Capacity{Memory: gi}
		n.Status.Capacity = v1.Capacity{CPU: 2000, Memory: 2 * gi, Instances: 7}
		s := NewSnapshot([]*v1.Node{n}, nil)
		if got, want := mustNode(t, s, "a").Allocatable, (v1.Capacity{CPU: 2000, Memory: gi, Instances: 7}); got != want {
			t.Errorf("allocatable %+v, want %+v", got, want)
		}
	})
}

// Placing one instance after another with Assign must respect capacity
// exactly, spread an app evenly, and give the same answers every run.
func TestPlaceRepeatedly(t *testing.T) {
	t.Run("bin-pack fills one node before the next and stops when all are full", func(t *testing.T) {
		s := NewSnapshot([]*v1.Node{newNode("a", 1000, gi), newNode("b", 1000, gi)}, nil)
		r := Request{App: "default/web", CPU: 100, Memory: 256 * mi}
		var got []string
		for i := range 9 {
			node, err := Place(s, &r)
			if err != nil {
				if i != 8 {
					t.Fatalf("placement %d failed: %v", i, err)
				}
				break
			}
			got = append(got, node)
			s.Assign(string(rune('0'+i)), node, &r)
		}
		want := []string{"a", "a", "a", "a", "b", "b", "b", "b"}
		if len(got) != len(want) {
			t.Fatalf("placed %v, want %v", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("placed %v, want %v", got, want)
			}
		}
	})
	t.Run("spread puts one instance per node before doubling up", func(t *testing.T) {
		s := NewSnapshot([]*v1.Node{newNode("a", 4000, 8*gi), newNode("b", 4000, 8*gi), newNode("c", 4000, 8*gi)}, nil)
		r := Request{App: "default/web", CPU: 100, Memory: 128 * mi, Placement: v1.PlacementSpread}
		perNode := map[string]int{}
		for i := range 9 {
			node, err := Place(s, &r)
			if err != nil {
				t.Fatal(err)
			}
			perNode[node]++
			s.Assign(string(rune('a'+i)), node, &r)
			for n, c := range perNode {
				if c > i/3+1 {
					t.Fatalf("after %d placements node %s holds %d", i+1, n, c)
				}
			}
		}
		if perNode["a"] != 3 || perNode["b"] != 3 || perNode["c"] != 3 {
			t.Errorf("per node %v, want 3 each", perNode)
		}
	})
}
