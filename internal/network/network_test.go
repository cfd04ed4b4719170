package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

func TestSetup(t *testing.T) {
	n := newTestNetwork(t)
	ctx := context.Background()

	t.Run("gives every instance its own IP, reachable from the host", func(t *testing.T) {
		seen := map[string]string{}
		for _, id := range []string{"web-1", "web-2", "db-1"} {
			att := setup(t, n, id)
			if !n.subnet.Contains(att.IP) {
				t.Errorf("%s: IP %s outside subnet %s", id, att.IP, n.subnet)
			}
			if att.IP.Equal(n.Gateway()) {
				t.Errorf("%s: got the gateway address %s", id, att.IP)
			}
			if !att.Gateway.Equal(n.Gateway()) {
				t.Errorf("%s: gateway %s, want %s", id, att.Gateway, n.Gateway())
			}
			if other, dup := seen[att.IP.String()]; dup {
				t.Errorf("%s and %s both got %s", id, other, att.IP)
			}
			seen[att.IP.String()] = id
			if att.NetNSPath != filepath.Join(n.cfg.NetNSDir, id) {
				t.Errorf("%s: netns at %s", id, att.NetNSPath)
			}
			serveIn(t, att.NetNSPath, 8080, id)
			mustReach(t, "", net.JoinHostPort(att.IP.String(), "8080"), id)
		}
	})

	t.Run("is idempotent: a second call returns the same attachment", func(t *testing.T) {
		first := setup(t, n, "again-1", PortMapping{HostPort: freePort(t), ContainerPort: 80})
		second, err := n.Setup(ctx, "again-1", []PortMapping{{HostPort: mustPort(t, n, "again-1"), ContainerPort: 80, Protocol: "TCP"}})
		if err != nil {
			t.Fatalf("second Setup: %v", err)
		}
		if !first.IP.Equal(second.IP) || first.NetNSPath != second.NetNSPath {
			t.Fatalf("second Setup gave %+v, first %+v", second, first)
		}
		if files := ipamFiles(t, n); slices.Index(files, first.IP.String()) < 0 {
			t.Fatalf("reservation of %s missing: %v", first.IP, files)
		}
	})

	t.Run("refuses to change the ports of an existing attachment", func(t *testing.T) {
		setup(t, n, "ports-1")
		_, err := n.Setup(ctx, "ports-1", []PortMapping{{HostPort: freePort(t), ContainerPort: 80}})
		if !errors.Is(err, v1.ErrConflict) {
			t.Fatalf("Setup with new ports: got %v, want ErrConflict", err)
		}
	})

	t.Run("repairs an attachment whose interface is gone", func(t *testing.T) {
		att := setup(t, n, "broken-1")
		err := ns.WithNetNSPath(att.NetNSPath, func(ns.NetNS) error {
			link, err := netlink.LinkByName("eth0")
			if err != nil {
				return err
			}
			return netlink.LinkDel(link)
		})
		if err != nil {
			t.Fatal(err)
		}
		fixed := setup(t, n, "broken-1")
		serveIn(t, fixed.NetNSPath, 8080, "fixed")
		mustReach(t, "", net.JoinHostPort(fixed.IP.String(), "8080"), "fixed")
	})

	t.Run("repairs a netns left without a CNI result", func(t *testing.T) {
		if _, err := ensureNetNS(n.NetNSPath("orphan-ns")); err != nil {
			t.Fatal(err)
		}
		att := setup(t, n, "orphan-ns")
		serveIn(t, att.NetNSPath, 8080, "orphan")
		mustReach(t, "", net.JoinHostPort(att.IP.String(), "8080"), "orphan")
	})

	// ADD that died after host-local reserved the address, then a
	// reboot that took the netns: only the reservation is left, and ADD
	// on top of it is refused as a duplicate allocation.
	t.Run("repairs an address reserved without a CNI result", func(t *testing.T) {
		const id = "reserved-1"
		dir := filepath.Join(n.cfg.DataDir, "ipam", n.list.Name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		ip := slices.Clone(n.subnet.IP.To4())
		ip[3] = 200
		if err := os.WriteFile(filepath.Join(dir, ip.String()), []byte(id+"\r\n"+ifName), 0o600); err != nil {
			t.Fatal(err)
		}
		att := setup(t, n, id)
		serveIn(t, att.NetNSPath, 8080, "reserved")
		mustReach(t, "", net.JoinHostPort(att.IP.String(), "8080"), "reserved")
	})

	// Isolation filters IPv4 only: an instance's eth0 with an fe80::
	// address reached other namespaces' instances over the bridge.
	t.Run("gives eth0 no IPv6, and keeps ::1 on lo", func(t *testing.T) {
		att := setup(t, n, "nov6-1")
		err := ns.WithNetNSPath(att.NetNSPath, func(ns.NetNS) error {
			for dev, want := range map[string]int{"eth0": 0, "lo": 1} {
				link, err := netlink.LinkByName(dev)
				if err != nil {
					return err
				}
				addrs, err := netlink.AddrList(link, netlink.FAMILY_V6)
				if err != nil {
					return err
				}
				if len(addrs) != want {
					t.Errorf("%s has IPv6 addresses %v, want %d", dev, addrs, want)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("rejects ids that are not file and CNI safe", func(t *testing.T) {
		for _, id := range []string{"", "../etc", "a/b", "-x", "has space"} {
			if _, err := n.Setup(ctx, id, nil); !errors.Is(err, v1.ErrInvalid) {
				t.Errorf("Setup(%q): got %v, want ErrInvalid", id, err)
			}
		}
	})
}

// mustPort returns the host port instance id was set up with.
func mustPort(t *testing.T, n *Network, id string) int {
	t.Helper()
	_, rt, err := n.existing(id, n.NetNSPath(id))
	if err != nil || rt == nil {
		t.Fatalf("no attachment for %s: %v", id, err)
	}
	pm := rt.CapabilityArgs["portMappings"].([]any)[0].(map[string]any)
	return int(pm["hostPort"].(float64))
}

func TestPortMapping(t *testing.T) {
	n := newTestNetwork(t)
	ctx := context.Background()
	hostPort := freePort(t)
	att := setup(t, n, "published-1", PortMapping{HostPort: hostPort, ContainerPort: 8080})
	serveIn(t, att.NetNSPath, 8080, "published")

	t.Run("publishes the container port on the host", func(t *testing.T) {
		mustReach(t, "", fmt.Sprintf("127.0.0.1:%d", hostPort), "published")
	})

	t.Run("reaches the published port from another instance on the bridge", func(t *testing.T) {
		// Hairpin through the host: DNAT to an instance on the same bridge.
		// Published ports are public, so isolation lets this through.
		other := setup(t, n, "client-1")
		mustReach(t, other.NetNSPath, fmt.Sprintf("%s:%d", n.Gateway(), hostPort), "published")
	})

	t.Run("withdraws the port on teardown", func(t *testing.T) {
		chain := needles(n, "published-1")[3]
		if len(iptablesLines(t, chain)) == 0 {
			t.Fatalf("portmap chain %s not found while the port is published", chain)
		}
		if err := n.Teardown(ctx, "published-1"); err != nil {
			t.Fatal(err)
		}
		if _, err := dial("", fmt.Sprintf("127.0.0.1:%d", hostPort)); err == nil {
			t.Fatal("host port still answers after Teardown")
		}
		if lines := iptablesLines(t, chain); len(lines) != 0 {
			t.Fatalf("portmap rules left after Teardown:\n%v", lines)
		}
	})
}

func TestTeardown(t *testing.T) {
	n := newTestNetwork(t)
	ctx := context.Background()

	t.Run("releases the IP and removes the netns", func(t *testing.T) {
		att := setup(t, n, "gone-1")
		if err := n.Teardown(ctx, "gone-1"); err != nil {
			t.Fatal(err)
		}
		if files := ipamFiles(t, n); slices.Contains(files, att.IP.String()) {
			t.Errorf("IP %s still reserved: %v", att.IP, files)
		}
		if _, err := os.Lstat(att.NetNSPath); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("netns %s still there: %v", att.NetNSPath, err)
		}
		if names := dirNames(t, filepath.Join(n.cfg.DataDir, "cache", "results")); len(names) != 0 {
			t.Errorf("cached results left: %v", names)
		}
	})

	// A flow the kernel tracked for a freed address outlived it: the
	// isolation rules accept established flows, so datagrams a peer kept
	// sending would reach the address's next holder.
	t.Run("forgets the tracked flows of the address", func(t *testing.T) {
		att := setup(t, n, "tracked-1")
		// A tracked flow from the host to the instance; a datagram to a
		// port nobody listens on is tracked all the same.
		c, err := net.Dial("udp4", net.JoinHostPort(att.IP.String(), "9"))
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("x"))
		c.Close()
		tracked := func() int {
			flows, err := netlink.ConntrackTableList(netlink.ConntrackTable, netlink.InetFamily(unix.AF_INET))
			if err != nil {
				t.Skipf("cannot list tracked connections here: %v", err)
			}
			k := 0
			for _, f := range flows {
				if f.Forward.DstIP.Equal(att.IP) || f.Forward.SrcIP.Equal(att.IP) || f.Reverse.SrcIP.Equal(att.IP) {
					k++
				}
			}
			return k
		}
		if tracked() == 0 {
			t.Skip("the kernel tracks no flow to the instance here (no conntrack on the bridge)")
		}
		if err := n.Teardown(ctx, "tracked-1"); err != nil {
			t.Fatal(err)
		}
		if k := tracked(); k != 0 {
			t.Errorf("%d tracked flows of %s left after its teardown", k, att.IP)
		}
	})

	t.Run("is a no-op the second time", func(t *testing.T) {
		if err := n.Teardown(ctx, "gone-1"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("is a no-op for an id never set up", func(t *testing.T) {
		if err := n.Teardown(ctx, "never-1"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("cleans up when the netns was removed behind its back", func(t *testing.T) {
		att := setup(t, n, "lost-ns-1", PortMapping{HostPort: freePort(t), ContainerPort: 80})
		if err := removeNetNS(att.NetNSPath); err != nil {
			t.Fatal(err)
		}
		if err := n.Teardown(ctx, "lost-ns-1"); err != nil {
			t.Fatal(err)
		}
		if files := ipamFiles(t, n); slices.Contains(files, att.IP.String()) {
			t.Errorf("IP %s still reserved: %v", att.IP, files)
		}
		if lines := iptablesLines(t, needles(n, "lost-ns-1")[3]); len(lines) != 0 {
			t.Errorf("portmap rules left: %v", lines)
		}
	})
}

// TestPrepareNetNS covers the namespace made ahead of Setup, which the
// agent's container joins while Setup attaches it.
func TestPrepareNetNS(t *testing.T) {
	n := newTestNetwork(t)
	ctx := context.Background()
	// sameNS reports whether the namespace held open is the one mounted
	// at path now.
	sameNS := func(t *testing.T, held ns.NetNS, path string) bool {
		t.Helper()
		var sa, sb unix.Stat_t
		if err := unix.Fstat(int(held.Fd()), &sa); err != nil {
			t.Fatal(err)
		}
		if err := unix.Stat(path, &sb); err != nil {
			t.Fatal(err)
		}
		return sa.Dev == sb.Dev && sa.Ino == sb.Ino
	}

	t.Run("Setup fills the namespace joined before it", func(t *testing.T) {
		prep, err := n.PrepareNetNS(ctx, "early-1")
		if err != nil {
			t.Fatal(err)
		}
		held := holdNS(t, prep.Path) // what a container created now holds on to
		again, err := n.PrepareNetNS(ctx, "early-1")
		if err != nil || again != prep {
			t.Fatalf("second PrepareNetNS = %+v, %v; want %+v", again, err, prep)
		}
		att := setup(t, n, "early-1")
		if !sameNS(t, held, att.NetNSPath) || prep.Unchanged() != nil {
			t.Fatalf("Setup replaced the prepared namespace (Unchanged: %v)", prep.Unchanged())
		}
		if err := held.Do(func(ns.NetNS) error { return hasAddr(ifName, att.IP) }); err != nil { // the fd, not the path
			t.Fatalf("the held namespace: %v", err)
		}
		// A complete attachment is kept as it is.
		if _, err := n.PrepareNetNS(ctx, "early-1"); err != nil {
			t.Fatal(err)
		}
		if again := setup(t, n, "early-1"); !again.IP.Equal(att.IP) || !sameNS(t, held, again.NetNSPath) {
			t.Fatalf("after PrepareNetNS on a complete attachment: %s, want %s in the same namespace", again.IP, att.IP)
		}
		if err := n.Teardown(ctx, "early-1"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a namespace left by a crash is replaced", func(t *testing.T) {
		// An earlier agent made the namespace and died inside CNI ADD,
		// after the bridge plugin made eth0: ADD on top of it would fail.
		path := n.NetNSPath("crashed-1")
		if _, err := ensureNetNS(path); err != nil {
			t.Fatal(err)
		}
		err := ns.WithNetNSPath(path, func(ns.NetNS) error {
			return netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: ifName}, PeerName: "leftover0"})
		})
		if err != nil {
			t.Fatal(err)
		}
		old := holdNS(t, path)
		restarted := openTestNetwork(t, n.cfg, false)
		prep, err := restarted.PrepareNetNS(ctx, "crashed-1")
		if err != nil {
			t.Fatal(err)
		}
		if sameNS(t, old, path) {
			t.Fatal("the left-over namespace was kept")
		}
		att := setup(t, restarted, "crashed-1")
		mustHave := func(ns.NetNS) error { return hasAddr(ifName, att.IP) }
		if err := ns.WithNetNSPath(att.NetNSPath, mustHave); err != nil {
			t.Fatal(err)
		}
		if err := prep.Unchanged(); err != nil {
			t.Fatal(err)
		}
		if err := restarted.Teardown(ctx, "crashed-1"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("Teardown before Setup removes the prepared namespace", func(t *testing.T) {
		prep, err := n.PrepareNetNS(ctx, "unused-1")
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Teardown(ctx, "unused-1"); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(prep.Path); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("netns %s still there: %v", prep.Path, err)
		}
		if n.isFresh("unused-1") {
			t.Fatal("still marked fresh after Teardown")
		}
		// Setup alone still works: it makes its own namespace, which is
		// not the one prepared.
		setup(t, n, "unused-1")
		if err := prep.Unchanged(); !errors.Is(err, v1.ErrConflict) {
			t.Fatalf("Unchanged after a teardown and a new Setup = %v, want ErrConflict", err)
		}
		if err := n.Teardown(ctx, "unused-1"); err != nil {
			t.Fatal(err)
		}
	})

	if _, err := n.PrepareNetNS(ctx, "../escape"); !errors.Is(err, v1.ErrInvalid) {
		t.Errorf("PrepareNetNS of a bad id = %v, want ErrInvalid", err)
	}
}

// holdNS opens the namespace mounted at path, as a process inside it
// would hold it, until the test ends.
func holdNS(t *testing.T, path string) ns.NetNS {
	t.Helper()
	h, err := ns.GetNS(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func TestSetupTeardownCyclesLeaveNothingBehind(t *testing.T) {
	n := newTestNetwork(t)
	ctx := context.Background()
	const cycles = 50
	hostPort := freePort(t)
	ids := make([]string, cycles)
	for i := range ids {
		ids[i] = fmt.Sprintf("cycle-%d", i)
	}
	// One cycle first, so the bridge and portmap's shared chains exist in
	// the "before" picture, as they do on any node after its first instance.
	setup(t, n, "warmup", PortMapping{HostPort: hostPort, ContainerPort: 80})
	if err := n.Teardown(ctx, "warmup"); err != nil {
		t.Fatal(err)
	}
	before := iptablesLines(t, needles(n, ids...)...)

	for i, id := range ids {
		att := setup(t, n, id, PortMapping{HostPort: hostPort, ContainerPort: 80})
		if i%10 == 0 {
			serveIn(t, att.NetNSPath, 80, id)
			mustReach(t, "", fmt.Sprintf("127.0.0.1:%d", hostPort), id)
		}
		if err := n.Teardown(ctx, id); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
	}

	if files := ipamFiles(t, n); len(files) != 0 {
		t.Errorf("IPAM reservations left: %v", files)
	}
	if names := dirNames(t, n.cfg.NetNSDir); len(names) != 0 {
		t.Errorf("netns left: %v", names)
	}
	if names := dirNames(t, filepath.Join(n.cfg.DataDir, "cache", "results")); len(names) != 0 {
		t.Errorf("cached results left: %v", names)
	}
	after := iptablesLines(t, needles(n, ids...)...)
	if !slices.Equal(before, after) {
		t.Errorf("iptables changed over %d cycles\nbefore:\n%v\nafter:\n%v", cycles, before, after)
	}
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if l.Attrs().MasterIndex != 0 && l.Type() == "veth" {
			if br, err := netlink.LinkByIndex(l.Attrs().MasterIndex); err == nil && br.Attrs().Name == n.cfg.BridgeName {
				t.Errorf("veth %s still on the bridge", l.Attrs().Name)
			}
		}
	}
}

func TestGC(t *testing.T) {
	n := newTestNetwork(t)
	ctx := context.Background()
	keepAtt := setup(t, n, "keep-1")
	gone := setup(t, n, "gone-1", PortMapping{HostPort: freePort(t), ContainerPort: 80})
	setup(t, n, "gone-2")
	// A crash between creating a netns and running CNI ADD.
	if _, err := ensureNetNS(n.NetNSPath("gone-3")); err != nil {
		t.Fatal(err)
	}

	// A restarted agent: a new Network on the same config.
	restarted := openTestNetwork(t, n.cfg, false)
	if err := restarted.GC(ctx, func(id string) bool { return id == "keep-1" }); err != nil {
		t.Fatal(err)
	}

	t.Run("removes what is not kept", func(t *testing.T) {
		if names := dirNames(t, n.cfg.NetNSDir); !slices.Equal(names, []string{"keep-1"}) {
			t.Errorf("netns left: %v, want only keep-1", names)
		}
		if files := ipamFiles(t, n); !slices.Equal(files, []string{keepAtt.IP.String()}) {
			t.Errorf("reservations left: %v, want only %s", files, keepAtt.IP)
		}
		if lines := iptablesLines(t, needles(n, "gone-1")[3]); len(lines) != 0 {
			t.Errorf("portmap rules of gone-1 left: %v", lines)
		}
		if _, err := os.Lstat(gone.NetNSPath); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("netns of gone-1 left: %v", err)
		}
	})

	t.Run("leaves what is kept working", func(t *testing.T) {
		again, err := restarted.Setup(ctx, "keep-1", nil)
		if err != nil {
			t.Fatal(err)
		}
		if !again.IP.Equal(keepAtt.IP) {
			t.Fatalf("kept instance moved from %s to %s", keepAtt.IP, again.IP)
		}
		serveIn(t, again.NetNSPath, 8080, "kept")
		mustReach(t, "", net.JoinHostPort(again.IP.String(), "8080"), "kept")
	})
}

func TestCleanupRemovesEverything(t *testing.T) {
	requireRoot(t)
	cfg := newTestConfig(t)
	n := openTestNetwork(t, cfg, true)
	ctx := context.Background()
	setup(t, n, "c-1", PortMapping{HostPort: freePort(t), ContainerPort: 80})
	att := setup(t, n, "c-2")
	if err := n.SetPolicy(ctx, []Member{{IP: att.IP, Namespace: "a"}}); err != nil {
		t.Fatal(err)
	}
	if err := n.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if lines := iptablesLines(t, needles(n, "c-1", "c-2")...); len(lines) != 0 {
		t.Errorf("iptables lines left after Cleanup:\n%v", lines)
	}
	if _, err := netlink.LinkByName(cfg.BridgeName); err == nil {
		t.Errorf("bridge %s left after Cleanup", cfg.BridgeName)
	}
	if names := dirNames(t, cfg.NetNSDir); len(names) != 0 {
		t.Errorf("netns left after Cleanup: %v", names)
	}
	if files := ipamFiles(t, n); len(files) != 0 {
		t.Errorf("reservations left after Cleanup: %v", files)
	}
}

// A bridge of the machine's own (KeepBridge) stays after Cleanup, with
// what Gantry put on it gone.
func TestCleanupKeepsABridgeThatWasThere(t *testing.T) {
	requireRoot(t)
	cfg := newTestConfig(t)
	cfg.KeepBridge = true
	n := openTestNetwork(t, cfg, true)
	ctx := context.Background()
	setup(t, n, "k-1")
	if err := n.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	link, err := netlink.LinkByName(cfg.BridgeName)
	if err != nil {
		t.Fatalf("bridge %s gone after Cleanup: %v", cfg.BridgeName, err)
	}
	netlink.LinkDel(link)
	if names := dirNames(t, cfg.NetNSDir); len(names) != 0 {
		t.Errorf("netns left after Cleanup: %v", names)
	}
}

func TestConcurrentSetupAndTeardown(t *testing.T) {
	n := newTestNetwork(t)
	ctx := context.Background()
	const count = 12
	atts := make([]*Attachment, count)
	errs := make(chan error, count)
	for i := range count {
		go func() {
			var err error
			// Every second instance asks twice, as a restarting agent racing
			// its own first attempt would.
			atts[i], err = n.Setup(ctx, fmt.Sprintf("par-%d", i/2*2), nil)
			errs <- err
		}()
	}
	for range count {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	ips := map[string]int{}
	for i, att := range atts {
		if i%2 == 1 {
			if !att.IP.Equal(atts[i-1].IP) {
				t.Errorf("par-%d set up twice got %s and %s", i-1, atts[i-1].IP, att.IP)
			}
			continue
		}
		if j, dup := ips[att.IP.String()]; dup {
			t.Errorf("par-%d and par-%d share %s", i, j, att.IP)
		}
		ips[att.IP.String()] = i
	}
	for i := 0; i < count; i += 2 {
		go func() { errs <- n.Teardown(ctx, fmt.Sprintf("par-%d", i)) }()
	}
	for i := 0; i < count; i += 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if files := ipamFiles(t, n); len(files) != 0 {
		t.Errorf("reservations left: %v", files)
	}
}
