package apiserver_test

import (
	"context"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// A Node deleted while its agent runs is registered again by the agent,
// whose bridge stays on the subnet it was given. It got the first free
// subnet instead, which another node could hold already or be given next,
// while the agent kept handing out addresses of the old one. An agent
// registering with its bridge's address gets that subnet back when free.
func TestNodeRegisteredAgainKeepsItsBridgesSubnet(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	ctx := context.Background()
	c := ts.client(t, ts.Token)
	reg := func(name, bridge string) string {
		t.Helper()
		n, err := c.RegisterNode(ctx, name, nil, v1.NodeStatus{BridgeIP: bridge})
		if err != nil {
			t.Fatal(err)
		}
		return n.Spec.Subnet
	}
	first, second := reg("n1", ""), reg("n2", "")
	if first == second {
		t.Fatalf("two nodes share subnet %s", first)
	}
	for _, n := range []string{"n1", "n2"} {
		if _, err := c.Delete(ctx, "Node", "", n); err != nil {
			t.Fatal(err)
		}
	}
	// n2 comes back first, with its bridge: not on n1's subnet, the
	// first free one.
	gw := func(subnet string) string { return subnet[:len(subnet)-len(".0/24")] + ".1" }
	if got := reg("n2", gw(second)); got != second {
		t.Fatalf("n2 registered again with bridge %s: subnet %s, want %s", gw(second), got, second)
	}
	if got := reg("n1", gw(first)); got != first {
		t.Fatalf("n1 registered again with bridge %s: subnet %s, want %s", gw(first), got, first)
	}
	// A bridge on a subnet another node took meanwhile gets a free one.
	if _, err := c.Delete(ctx, "Node", "", "n1"); err != nil {
		t.Fatal(err)
	}
	if got := reg("n3", ""); got != first {
		t.Fatalf("n3 got %s, want the free %s", got, first)
	}
	if got := reg("n1", gw(first)); got == first || got == second {
		t.Fatalf("n1 registered again with a bridge on n3's subnet: given %s, which another node holds", got)
	}
}
