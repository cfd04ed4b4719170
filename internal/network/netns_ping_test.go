package network

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
)

// Instances have no CAP_NET_RAW; a namespace Gantry makes lets every
// group open ICMP datagram sockets, so ping still works inside it.
func TestNewNetNSAllowsUnprivilegedPing(t *testing.T) {
	requireRoot(t)
	path := filepath.Join(t.TempDir(), "ns")
	if _, err := ensureNetNS(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeNetNS(path) })
	var got string
	err := ns.WithNetNSPath(path, func(ns.NetNS) error {
		b, err := os.ReadFile("/proc/sys/net/ipv4/ping_group_range")
		got = strings.Join(strings.Fields(string(b)), " ")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got != "0 2147483647" {
		t.Errorf("ping_group_range in a new namespace = %q, want all groups", got)
	}
}
