package ingress

import (
	"net"
	"strconv"
	"strings"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/discovery"
)

// An explicit nodePort wins over a port the balancer allocated to another
// exposed port earlier: that one moves to another port.
func TestAnExplicitNodePortBeatsAnEarlierAllocation(t *testing.T) {
	port, eps := startEchoServers(t, 1)
	lo, hi := freePortRange(t)
	auto := &discovery.Service{
		Namespace: "default", Name: "auto",
		Ports: []v1.Port{{Name: "pg", Port: port, Protocol: v1.ProtocolTCP, Expose: "tcp"}},
		Ready: eps,
	}
	h := startProxy(t, Config{NodePortMin: lo, NodePortMax: hi}, auto)
	taken, ok := h.p.NodePort("default", "auto", "pg")
	if !ok {
		t.Fatal("auto was not published")
	}
	explicit := &discovery.Service{
		Namespace: "default", Name: "pinned",
		Ports: []v1.Port{{Name: "pg", Port: port, Protocol: v1.ProtocolTCP, Expose: "tcp", NodePort: taken}},
		Ready: eps,
	}
	h.publish(t, auto, explicit)
	got, ok := h.p.NodePort("default", "pinned", "pg")
	if !ok || got != taken {
		t.Fatalf("the app that asked for node port %d explicitly got %d, %v (NodePorts %v)", taken, got, ok, h.p.NodePorts())
	}
	if np, ok := h.p.NodePort("default", "auto", "pg"); !ok || np == taken {
		t.Fatalf("default/auto should have moved to another port, has %d, %v", np, ok)
	}
	if g, _ := talk(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(taken))); !strings.HasPrefix(g, "echo-") {
		t.Fatalf("greeting %q", g)
	}
}
