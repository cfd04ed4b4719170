package scheduler

import (
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// An instance with hostNetwork binds its container ports on the node
// itself (docs/manifest.md: "its ports must be free on the node"); once
// RequestFor reserved only ports[].hostPort, and two replicas of a
// hostNetwork App listening on 8080 were bin-packed onto one node, where
// the second cannot bind its port, although another node is free.
func TestHostNetworkPortsAreReserved(t *testing.T) {
	mk := func(name string) *v1.Instance {
		i := newInstance(name, "edge", 100, 128*mi)
		i.Spec.Template.SecurityContext = &v1.SecurityContext{HostNetwork: true}
		i.Spec.Template.Ports = []v1.Port{{Name: "http", Port: 8080, Protocol: v1.ProtocolHTTP}}
		return i
	}
	s := NewSnapshot([]*v1.Node{newNode("a", 4000, 8*gi), newNode("b", 4000, 8*gi)},
		[]*v1.Instance{boundTo(mk("edge-1"), "a")})
	r := RequestFor(mk("edge-2"))
	node, err := Place(s, &r)
	if err != nil {
		t.Fatal(err)
	}
	if node == "a" {
		t.Fatalf("second hostNetwork instance on port 8080 placed on node a, which already runs one on 8080 (request host ports: %v)", r.HostPorts)
	}
}

// A finished instance frees its CPU and memory at once, but not its host
// ports while it has an address: its network namespace and port mapping
// stay on the node until its agent releases them (and clears the
// address), or the instance is deleted. Once, another instance asking for
// the same host port was placed there, and its traffic went to the dead
// one's mapping.
func TestFinishedInstanceKeepsItsHostPortsUntilReleased(t *testing.T) {
	mk := func(name string) *v1.Instance {
		i := newInstance(name, "job", 3000, 6*gi)
		i.Spec.Template.Ports = []v1.Port{{Name: "http", Port: 80, HostPort: 8080, Protocol: v1.ProtocolHTTP}}
		return i
	}
	done := boundTo(mk("job-1"), "a")
	done.Status.Phase, done.Status.IP = v1.PhaseSucceeded, "10.77.0.5"
	s := NewSnapshot([]*v1.Node{newNode("a", 4000, 8*gi), newNode("b", 4000, 8*gi)}, nil)
	s.SetInstance(done)
	r := RequestFor(mk("job-2"))
	if node, err := Place(s, &r); err != nil || node != "b" {
		t.Fatalf("placed on %q (%v); want b: a still maps host port 8080 for a finished instance", node, err)
	}
	// Its CPU and memory are free: without the port, a fits.
	other := newInstance("big", "other", 3000, 6*gi)
	r = RequestFor(other)
	s2 := NewSnapshot([]*v1.Node{newNode("a", 4000, 8*gi)}, nil)
	s2.SetInstance(done)
	if node, err := Place(s2, &r); err != nil || node != "a" {
		t.Fatalf("an instance without host ports: %q, %v; want a, whose CPU and memory the finished one freed", node, err)
	}
	// Deleted: the port is free again.
	if !s.Release(done.Metadata.Key()) {
		t.Fatal("the finished instance held nothing")
	}
	r = RequestFor(mk("job-3"))
	s.SetInstance(boundTo(mk("job-x"), "b"))
	if node, err := Place(s, &r); err != nil || node != "a" {
		t.Fatalf("after the delete: %q, %v; want a", node, err)
	}
	// Released by its agent (no address): free too, before the delete.
	s3 := NewSnapshot([]*v1.Node{newNode("a", 4000, 8*gi), newNode("b", 4000, 8*gi)}, nil)
	released := boundTo(mk("job-1"), "a")
	released.Status.Phase = v1.PhaseSucceeded
	s3.SetInstance(released)
	s3.SetInstance(boundTo(mk("job-y"), "b"))
	r = RequestFor(mk("job-4"))
	if node, err := Place(s3, &r); err != nil || node != "a" {
		t.Fatalf("after its agent released the network: %q, %v; want a", node, err)
	}
}

// A finished hostNetwork instance has no port mapping to keep (the agent
// sets up CNI port mappings only for ports[].hostPort, and a hostNetwork
// container's listening socket dies with its process): its container
// ports are free once it finishes. A first version kept them reserved,
// and a single-node cluster could not place the next instance of a
// hostNetwork App while a finished one was kept.
func TestFinishedHostNetworkInstanceFreesItsPorts(t *testing.T) {
	mk := func(name string) *v1.Instance {
		i := newInstance(name, "edge", 100, 128*mi)
		i.Spec.Template.SecurityContext = &v1.SecurityContext{HostNetwork: true}
		i.Spec.Template.Ports = []v1.Port{{Name: "http", Port: 8080, Protocol: v1.ProtocolHTTP}}
		return i
	}
	done := boundTo(mk("edge-1"), "a")
	done.Status.Phase = v1.PhaseFailed
	s := NewSnapshot([]*v1.Node{newNode("a", 4000, 8*gi)}, []*v1.Instance{done})
	r := RequestFor(mk("edge-2"))
	if node, err := Place(s, &r); err != nil || node != "a" {
		t.Fatalf("placed on %q (%v); want a: the finished hostNetwork instance listens on nothing", node, err)
	}
}
