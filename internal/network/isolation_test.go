package network

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

func TestIsolation(t *testing.T) {
	n := newTestNetwork(t)
	ctx := context.Background()
	a1 := setup(t, n, "a-1")
	a2 := setup(t, n, "a-2")
	b1 := setup(t, n, "b-1")
	for id, att := range map[string]*Attachment{"a-1": a1, "a-2": a2, "b-1": b1} {
		serveIn(t, att.NetNSPath, 8080, id)
	}
	addr := func(att *Attachment) string { return net.JoinHostPort(att.IP.String(), "8080") }
	mustBlock := func(t *testing.T, from, to *Attachment) {
		t.Helper()
		_, err := dial(from.NetNSPath, addr(to))
		if !errors.Is(err, syscall.EHOSTUNREACH) {
			t.Fatalf("connect %s -> %s: got %v, want it rejected (host unreachable)", from.IP, to.IP, err)
		}
	}
	policy := func(t *testing.T, members ...Member) {
		t.Helper()
		if err := n.SetPolicy(ctx, members); err != nil {
			t.Fatalf("SetPolicy: %v", err)
		}
	}

	t.Run("isolates instances no policy names yet", func(t *testing.T) {
		mustBlock(t, a1, a2)
		mustReach(t, "", addr(a1), "a-1")
	})

	policy(t,
		Member{IP: a1.IP, Namespace: "a"},
		Member{IP: a2.IP, Namespace: "a"},
		Member{IP: b1.IP, Namespace: "b"},
	)

	t.Run("lets instances of one namespace connect", func(t *testing.T) {
		mustReach(t, a1.NetNSPath, addr(a2), "a-2")
		mustReach(t, a2.NetNSPath, addr(a1), "a-1")
	})
	t.Run("blocks connections to another namespace", func(t *testing.T) {
		mustBlock(t, a1, b1)
		mustBlock(t, b1, a1)
	})
	t.Run("lets the host reach every instance", func(t *testing.T) {
		for id, att := range map[string]*Attachment{"a-1": a1, "a-2": a2, "b-1": b1} {
			mustReach(t, "", addr(att), id)
		}
	})
	t.Run("lets instances reach the host on the gateway", func(t *testing.T) {
		ln, err := net.Listen("tcp4", net.JoinHostPort(n.Gateway().String(), "0"))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			if c, err := ln.Accept(); err == nil {
				c.Write([]byte("host\n"))
				c.Close()
			}
		}()
		mustReach(t, b1.NetNSPath, ln.Addr().String(), "host")
	})

	policy(t,
		Member{IP: a1.IP, Namespace: "a"},
		Member{IP: a2.IP, Namespace: "a"},
		Member{IP: b1.IP, Namespace: "b", AllowFrom: []string{"a"}},
	)

	t.Run("lets in a namespace the target allows", func(t *testing.T) {
		mustReach(t, a1.NetNSPath, addr(b1), "b-1")
		mustReach(t, a2.NetNSPath, addr(b1), "b-1")
	})
	t.Run("does not allow the way back", func(t *testing.T) {
		mustBlock(t, b1, a1)
	})

	t.Run("lets every namespace in when the target allows *", func(t *testing.T) {
		policy(t,
			Member{IP: a1.IP, Namespace: "a", AllowFrom: []string{AllowAll}},
			Member{IP: a2.IP, Namespace: "a"},
			Member{IP: b1.IP, Namespace: "b"},
		)
		mustReach(t, b1.NetNSPath, addr(a1), "a-1")
		mustBlock(t, b1, a2)
		mustBlock(t, a1, b1)
	})

	t.Run("applies the others' rules when one member is bad, isolating it", func(t *testing.T) {
		err := n.SetPolicy(ctx, []Member{
			{IP: a1.IP, Namespace: "a"},
			{IP: a2.IP, Namespace: "a", AllowFrom: []string{"Not A Label"}},
			{IP: b1.IP, Namespace: "b", AllowFrom: []string{"a"}},
		})
		if !errors.Is(err, v1.ErrInvalid) || !strings.Contains(err.Error(), a2.IP.String()) {
			t.Fatalf("SetPolicy = %v, want ErrInvalid naming %s", err, a2.IP)
		}
		mustReach(t, a1.NetNSPath, addr(b1), "b-1")
		mustBlock(t, a1, a2)
		mustBlock(t, b1, a1)
	})

	policy(t,
		Member{IP: a1.IP, Namespace: "a"},
		Member{IP: a2.IP, Namespace: "a"},
		Member{IP: b1.IP, Namespace: "b", AllowFrom: []string{"a"}},
	)

	t.Run("removes the rules of members that are gone", func(t *testing.T) {
		policy(t, Member{IP: a1.IP, Namespace: "a"}, Member{IP: a2.IP, Namespace: "a"})
		if lines := iptablesLines(t, b1.IP.String()); len(lines) != 0 {
			t.Fatalf("rules still mention %s:\n%s", b1.IP, strings.Join(lines, "\n"))
		}
		chains, err := n.ownChains()
		if err != nil {
			t.Fatal(err)
		}
		// main, one group (a), one source chain (a).
		if len(chains) != 3 {
			t.Fatalf("chains after removing namespace b: %v", chains)
		}
		mustBlock(t, a1, b1)
		mustReach(t, a1.NetNSPath, addr(a2), "a-2")
	})

	t.Run("forgets a member on teardown", func(t *testing.T) {
		if err := n.Teardown(ctx, "a-2"); err != nil {
			t.Fatal(err)
		}
		if lines := iptablesLines(t, a2.IP.String()+"/"); len(lines) != 0 {
			t.Fatalf("rules still mention torn-down %s:\n%s", a2.IP, strings.Join(lines, "\n"))
		}
	})

	t.Run("puts the FORWARD hook back at the first apply past the recheck interval", func(t *testing.T) {
		hook := strings.Replace(n.hookLine(), "-I FORWARD 1 ", "-D FORWARD ", 1)
		if err := n.restore(ctx, "*filter\n"+hook+"COMMIT\n"); err != nil {
			t.Fatal(err)
		}
		mustReach(t, b1.NetNSPath, addr(a1), "a-1") // unfiltered without the hook
		n.policy.mu.Lock()
		n.policy.checked = time.Now().Add(-PolicyRecheck)
		n.policy.mu.Unlock()
		policy(t, Member{IP: a1.IP, Namespace: "a"}, Member{IP: b1.IP, Namespace: "b"})
		if _, hooks, err := n.readFilter(ctx); err != nil || hooks != 1 {
			t.Fatalf("FORWARD hooks: %d, %v; want 1", hooks, err)
		}
		mustBlock(t, b1, a1)
	})

	t.Run("keeps the policy when the agent restarts", func(t *testing.T) {
		openTestNetwork(t, n.cfg, false)
		if _, hooks, err := n.readFilter(ctx); err != nil || hooks != 1 {
			t.Fatalf("FORWARD hooks after restart: %d, %v; want 1", hooks, err)
		}
		mustReach(t, "", addr(a1), "a-1")
		mustBlock(t, b1, a1)
	})

	t.Run("removes all chains and the hook when told to", func(t *testing.T) {
		if err := n.removeIsolation(ctx); err != nil {
			t.Fatal(err)
		}
		if lines := iptablesLines(t, "GANTRY-ISO-"+n.cfg.BridgeName, n.chainPrefix()); len(lines) != 0 {
			t.Fatalf("left:\n%s", strings.Join(lines, "\n"))
		}
	})
}

func TestSetPolicyLeavesOutBadMembers(t *testing.T) {
	ip := net.ParseIP("10.251.0.2")
	good := Member{IP: net.ParseIP("10.251.0.9"), Namespace: "z", AllowFrom: []string{"a"}}
	cases := []struct {
		name    string
		members []Member
	}{
		{"an IPv6 address", []Member{{IP: net.ParseIP("fd00::1"), Namespace: "a"}}},
		{"no address", []Member{{Namespace: "a"}}},
		{"an empty namespace", []Member{{IP: ip}}},
		{"a namespace that would break the rules file", []Member{{IP: ip, Namespace: "a\"\n-A FORWARD -j ACCEPT"}}},
		{"an allowFrom that is not a DNS label", []Member{{IP: ip, Namespace: "a", AllowFrom: []string{"B C"}}}},
		{"an allowFrom that is not a DNS label beside *", []Member{{IP: ip, Namespace: "a", AllowFrom: []string{"*", "B C"}}}},
		{"the same address twice", []Member{{IP: ip, Namespace: "a"}, {IP: ip, Namespace: "b"}}},
	}
	for _, c := range cases {
		t.Run("leaves out "+c.name, func(t *testing.T) {
			got, err := validateMembers(append(c.members, good))
			if !errors.Is(err, v1.ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
			if len(got) != 1 || !got[0].IP.Equal(good.IP) {
				t.Fatalf("kept %v, want only the good member %v", got, good)
			}
		})
	}
}

func TestAllowFromEveryNamespace(t *testing.T) {
	members, err := validateMembers([]Member{
		{IP: net.ParseIP("10.0.0.2"), Namespace: "a", AllowFrom: []string{"b", AllowAll, "c"}},
		{IP: net.ParseIP("10.0.0.3"), Namespace: "b"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(members[0].AllowFrom, []string{AllowAll}) {
		t.Fatalf("allowFrom = %v, want only %q", members[0].AllowFrom, AllowAll)
	}
	out, _ := renderPolicy("GANTRY-ISO-br", "GANTRY-XXXXXX-", members, nil)
	var group string
	for _, r := range strings.Split(out, "\n") {
		if f := strings.Fields(r); len(f) > 4 && f[1] == "GANTRY-ISO-br" && f[3] == "10.0.0.2/32" {
			group = f[len(f)-1]
		}
	}
	var rules []string
	for _, r := range strings.Split(out, "\n") {
		if strings.HasPrefix(r, "-A "+group+" ") {
			rules = append(rules, r)
		}
	}
	if len(rules) < 2 || !strings.HasSuffix(rules[len(rules)-2], "-j ACCEPT") || !strings.Contains(rules[len(rules)-2], "every ns") {
		t.Fatalf("group chain %s of a member open to every namespace:\n%s", group, strings.Join(rules, "\n"))
	}
}

func TestRenderPolicy(t *testing.T) {
	members, err := validateMembers([]Member{
		{IP: net.ParseIP("10.0.0.3"), Namespace: "b", AllowFrom: []string{"a", "a", "b"}},
		{IP: net.ParseIP("10.0.0.2"), Namespace: "a"},
		{IP: net.ParseIP("10.0.0.4"), Namespace: "a"},
		{IP: net.ParseIP("10.0.0.5"), Namespace: "c", AllowFrom: []string{"ghost"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	const main, prefix = "GANTRY-ISO-br", "GANTRY-XXXXXX-"
	out, chains := renderPolicy(main, prefix, members, []string{main, prefix + "PSTALE"})
	rules := strings.Split(strings.TrimSpace(out), "\n")

	t.Run("is one transaction on the filter table", func(t *testing.T) {
		if rules[0] != "*filter" || rules[len(rules)-1] != "COMMIT" {
			t.Fatalf("not framed as one filter transaction:\n%s", out)
		}
	})
	t.Run("accepts replies and published ports before anything else", func(t *testing.T) {
		first := slices.IndexFunc(rules, func(r string) bool { return strings.HasPrefix(r, "-A ") })
		if !strings.Contains(rules[first], "RELATED,ESTABLISHED -j ACCEPT") || !strings.Contains(rules[first+1], "--ctstate DNAT -j ACCEPT") {
			t.Fatalf("first rules: %q, %q", rules[first], rules[first+1])
		}
	})
	t.Run("ends the main chain with a reject", func(t *testing.T) {
		var last string
		for _, r := range rules {
			if strings.HasPrefix(r, "-A "+main+" ") {
				last = r
			}
		}
		if !strings.HasSuffix(last, "-j REJECT --reject-with "+rejectWith) {
			t.Fatalf("last main rule: %q", last)
		}
	})
	t.Run("shares one group chain between members of the same policy", func(t *testing.T) {
		groupOf := map[string]string{}
		for _, r := range rules {
			if f := strings.Fields(r); len(f) > 4 && f[1] == main && f[2] == "-d" {
				groupOf[f[3]] = f[len(f)-1]
			}
		}
		if len(groupOf) != 4 || groupOf["10.0.0.2/32"] != groupOf["10.0.0.4/32"] || groupOf["10.0.0.2/32"] == groupOf["10.0.0.3/32"] {
			t.Fatalf("dispatch: %v", groupOf)
		}
	})
	t.Run("skips namespaces without members", func(t *testing.T) {
		if strings.Contains(out, "from ns ghost") {
			t.Fatalf("jump to an empty source namespace:\n%s", out)
		}
	})
	t.Run("reports the chains it leaves", func(t *testing.T) {
		if !slices.Contains(chains, main) || slices.Contains(chains, prefix+"PSTALE") || !slices.IsSorted(chains) {
			t.Fatalf("chains = %v", chains)
		}
		for _, c := range chains {
			if !slices.Contains(rules, ":"+c+" - [0:0]") {
				t.Errorf("chain %s reported but not declared", c)
			}
		}
	})
	t.Run("deletes chains of the old policy after flushing them", func(t *testing.T) {
		decl := slices.Index(rules, ":"+prefix+"PSTALE - [0:0]")
		del := slices.Index(rules, "-X "+prefix+"PSTALE")
		if decl < 0 || del < decl {
			t.Fatalf("stale chain: declared at %d, deleted at %d:\n%s", decl, del, out)
		}
		if slices.Contains(rules, "-X "+main) {
			t.Fatal("deletes the main chain")
		}
	})
	t.Run("keeps every chain name within iptables' 28 characters", func(t *testing.T) {
		for _, r := range rules {
			if strings.HasPrefix(r, ":") {
				if name := strings.Fields(r[1:])[0]; len(name) > 28 {
					t.Errorf("chain %s is %d characters", name, len(name))
				}
			}
		}
	})
}
