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
