package network

import (
	"bufio"
	"context"
	"crypto/sha512"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

// testSeq numbers the networks a test binary makes: each gets its own
// bridge (gtnetN), subnet (10.251.N.0/24), data dir and netns dir. The
// names are deterministic so that a run killed half-way is cleaned up by
// the next one (newTestNetwork starts with Cleanup).
var testSeq atomic.Int32

func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("network tests need root: they create bridges, network namespaces and iptables rules")
	}
	for _, p := range []string{"bridge", "host-local", "portmap", "loopback"} {
		if _, err := os.Stat(filepath.Join("/usr/lib/cni", p)); err != nil {
			tb.Skipf("CNI plugin %s missing (apt-get install containernetworking-plugins): %v", p, err)
		}
	}
}

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{tb}, &slog.HandlerOptions{Level: testLogLevel()}))
}

type testWriter struct{ tb testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// newTestConfig returns the Config of a fresh, isolated test network.
func newTestConfig(tb testing.TB) Config {
	tb.Helper()
	seq := testSeq.Add(1)
	if seq > 250 {
		tb.Fatal("too many test networks in one run")
	}
	return Config{
		BridgeName:  fmt.Sprintf("gtnet%d", seq),
		Subnet:      fmt.Sprintf("10.251.%d.0/24", seq),
		ClusterCIDR: "10.251.0.0/16",
		DataDir:     tb.TempDir(),
		NetNSDir:    tb.TempDir(),
	}
}

// newTestNetwork makes a Network on a fresh config and removes all it
// leaves on the machine when the test ends.
func newTestNetwork(tb testing.TB) *Network {
	tb.Helper()
	requireRoot(tb)
	return openTestNetwork(tb, newTestConfig(tb), true)
}

func openTestNetwork(tb testing.TB, cfg Config, fresh bool) *Network {
	tb.Helper()
	n, err := New(cfg, testLogger(tb))
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	if fresh {
		// Leftovers of a killed earlier run with the same names.
		if err := n.Cleanup(context.Background()); err != nil {
			tb.Fatalf("Cleanup of leftovers: %v", err)
		}
		if n, err = New(cfg, testLogger(tb)); err != nil {
			tb.Fatalf("New: %v", err)
		}
		tb.Cleanup(func() {
			if err := n.Cleanup(context.Background()); err != nil {
				tb.Errorf("Cleanup: %v", err)
			}
			if _, err := netlink.LinkByName(cfg.BridgeName); err == nil {
				tb.Errorf("bridge %s still exists after Cleanup", cfg.BridgeName)
			}
		})
	}
	return n
}

func setup(tb testing.TB, n *Network, id string, ports ...PortMapping) *Attachment {
	tb.Helper()
	att, err := n.Setup(context.Background(), id, ports)
	if err != nil {
		tb.Fatalf("Setup(%s): %v", id, err)
	}
	return att
}

// serveIn listens on port inside the network namespace at nsPath and
// answers every connection with greeting. The socket belongs to the
// namespace it was created in, so it keeps serving there after the
// goroutine that made it has left.
func serveIn(tb testing.TB, nsPath string, port int, greeting string) {
	tb.Helper()
	var ln net.Listener
	err := ns.WithNetNSPath(nsPath, func(ns.NetNS) error {
		var err error
		ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", port))
		return err
	})
	if err != nil {
		tb.Fatalf("listen in %s: %v", nsPath, err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, greeting+"\n")
			c.Close()
		}
	}()
}

// dial connects to addr from the host, or from inside the network
// namespace at nsPath when it is not empty, and returns the greeting.
func dial(nsPath, addr string) (string, error) {
	var (
		conn net.Conn
		err  error
	)
	connect := func() { conn, err = net.DialTimeout("tcp4", addr, 3*time.Second) }
	if nsPath == "" {
		connect()
	} else if nerr := ns.WithNetNSPath(nsPath, func(ns.NetNS) error { connect(); return nil }); nerr != nil {
		return "", nerr
	}
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	return strings.TrimSpace(line), err
}

func mustReach(tb testing.TB, nsPath, addr, want string) {
	tb.Helper()
	got, err := dial(nsPath, addr)
	if err != nil {
		tb.Fatalf("connect to %s from %s: %v", addr, where(nsPath), err)
	}
	if got != want {
		tb.Fatalf("connect to %s from %s: got greeting %q, want %q", addr, where(nsPath), got, want)
	}
}

func where(nsPath string) string {
	if nsPath == "" {
		return "the host"
	}
	return filepath.Base(nsPath)
}

// freePort returns a TCP port nothing on the host listens on right now.
func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// iptablesLines returns the lines of iptables-save (all tables) that
// contain any of needles.
func iptablesLines(tb testing.TB, needles ...string) []string {
	tb.Helper()
	out, err := exec.Command("iptables-save").Output()
	if err != nil {
		tb.Fatalf("iptables-save: %v", err)
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		for _, nd := range needles {
			if strings.Contains(l, nd) {
				lines = append(lines, l)
				break
			}
		}
	}
	return lines
}

// needles are strings that appear in every iptables line the network or
// the CNI plugins create for it: the bridge (network) name, the subnet's
// prefix, Gantry's chain prefix, and the per-instance portmap chains.
func needles(n *Network, ids ...string) []string {
	prefix := strings.TrimSuffix(n.subnet.IP.String(), "0") // "10.251.3."
	out := []string{n.cfg.BridgeName, prefix, n.chainPrefix()}
	for _, id := range ids {
		out = append(out, portmapChain(n.cfg.BridgeName, id))
	}
	return out
}

// portmapChain is the name of the DNAT chain the portmap plugin makes for
// one instance: "CNI-DN-" and the hex SHA-512 of network name and
// container ID, cut to iptables' 28 characters.
func portmapChain(network, id string) string {
	return fmt.Sprintf("CNI-DN-%x", sha512.Sum512([]byte(network+id)))[:28]
}

// ipamFiles lists host-local's reservation files (one per reserved IP).
func ipamFiles(tb testing.TB, n *Network) []string {
	tb.Helper()
	entries, err := os.ReadDir(filepath.Join(n.cfg.DataDir, "ipam", n.cfg.BridgeName))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		tb.Fatal(err)
	}
	var ips []string
	for _, e := range entries {
		if net.ParseIP(e.Name()) != nil {
			ips = append(ips, e.Name())
		}
	}
	return ips
}

func dirNames(tb testing.TB, dir string) []string {
	tb.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		tb.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// testLogLevel shows the per-instance debug lines only with -v, so that
// benchmark output stays readable.
func testLogLevel() slog.Level {
	if testing.Verbose() {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}
