package network

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

func TestHostFiles(t *testing.T) {
	_, subnet, _ := net.ParseCIDR("10.77.1.0/24")
	n := &Network{subnet: subnet, gateway: firstHost(subnet)}
	dir := filepath.Join(t.TempDir(), "inst-1")

	t.Run("resolv.conf points at the gateway and searches the namespace first", func(t *testing.T) {
		path, err := n.WriteResolvConf(dir, "shop", "gantry.local.")
		if err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(path)
		want := "nameserver 10.77.1.1\nsearch shop.svc.gantry.local svc.gantry.local gantry.local\noptions ndots:5\n"
		if string(got) != want {
			t.Fatalf("resolv.conf:\n%s\nwant:\n%s", got, want)
		}
	})

	t.Run("hosts names localhost and the instance", func(t *testing.T) {
		path, err := n.WriteHosts(dir, "web-1", net.ParseIP("10.77.1.7"))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(path)
		want := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n10.77.1.7\tweb-1\n"
		if string(got) != want {
			t.Fatalf("hosts:\n%s\nwant:\n%s", got, want)
		}
	})

	t.Run("rewrites in place so a bind mount sees the change", func(t *testing.T) {
		path := filepath.Join(dir, ResolvConfFile)
		before, _ := os.Stat(path)
		if _, err := n.WriteResolvConf(dir, "other", "gantry.local"); err != nil {
			t.Fatal(err)
		}
		after, _ := os.Stat(path)
		if !os.SameFile(before, after) {
			t.Fatal("resolv.conf was replaced by a new file")
		}
	})

	t.Run("refuses input that would corrupt the files", func(t *testing.T) {
		for name, err := range map[string]error{
			"namespace with a space": func() error { _, err := n.WriteResolvConf(dir, "a b", "gantry.local"); return err }(),
			"empty domain":           func() error { _, err := n.WriteResolvConf(dir, "a", ""); return err }(),
			"hostname with newline":  func() error { _, err := n.WriteHosts(dir, "a\n1.2.3.4 evil", net.ParseIP("10.0.0.1")); return err }(),
			"no IP":                  func() error { _, err := n.WriteHosts(dir, "a", nil); return err }(),
		} {
			if !errors.Is(err, v1.ErrInvalid) {
				t.Errorf("%s: got %v, want ErrInvalid", name, err)
			}
		}
	})
}

func TestConfigDefaults(t *testing.T) {
	cases := []struct {
		name    string
		cfg     Config
		wantErr bool
		check   func(t *testing.T, c Config)
	}{
		{
			name: "fills in bridge, plugin dirs, netns dir, cluster CIDR and MTU",
			cfg:  Config{Subnet: "10.77.1.0/24", DataDir: "/tmp/x"},
			check: func(t *testing.T, c Config) {
				if c.BridgeName != "gantry0" || c.NetNSDir != "/run/gantry/netns" || c.ClusterCIDR != "10.77.1.0/24" ||
					len(c.PluginDirs) != 2 || c.PluginDirs[0] != "/usr/lib/cni" || c.MTU < 576 {
					t.Fatalf("defaults: %+v", c)
				}
			},
		},
		{name: "requires a subnet", cfg: Config{DataDir: "/tmp/x"}, wantErr: true},
		{name: "requires a data dir", cfg: Config{Subnet: "10.77.1.0/24"}, wantErr: true},
		{name: "refuses an IPv6 subnet", cfg: Config{Subnet: "fd00::/64", DataDir: "/tmp/x"}, wantErr: true},
		{name: "refuses a subnet outside the cluster CIDR", cfg: Config{Subnet: "10.78.1.0/24", ClusterCIDR: "10.77.0.0/16", DataDir: "/tmp/x"}, wantErr: true},
		{name: "refuses a bridge name longer than an interface name", cfg: Config{BridgeName: "a-very-long-bridge", Subnet: "10.77.1.0/24", DataDir: "/tmp/x"}, wantErr: true},
		{name: "refuses a /31 that has no room for instances", cfg: Config{Subnet: "10.77.1.0/31", DataDir: "/tmp/x"}, wantErr: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, _, _, err := c.cfg.withDefaults()
			if c.wantErr {
				if !errors.Is(err, v1.ErrInvalid) {
					t.Fatalf("got %v, want ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c.check(t, got)
		})
	}
}
