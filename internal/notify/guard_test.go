package notify

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

func TestGuardRefusesPrivateAddresses(t *testing.T) {
	g := NewGuard("203.0.113.9:7443")
	tests := []struct {
		ip      string
		refused bool
	}{
		{"127.0.0.1", true},
		{"127.8.9.10", true},
		{"::1", true},
		{"::ffff:127.0.0.1", true},
		{"169.254.169.254", true},
		{"fe80::1", true},
		{"10.1.2.3", true},
		{"172.16.0.1", true},
		{"172.31.255.255", true},
		{"192.168.1.1", true},
		{"fd00::1", true},
		{"100.64.0.1", true},
		{"0.0.0.0", true},
		{"::", true},
		{"224.0.0.1", true},
		{"203.0.113.9", true}, // the API server
		{"172.32.0.1", false},
		{"93.184.215.14", false},
		{"2606:4700::1111", false},
		{"203.0.113.10", false},
	}
	for _, tt := range tests {
		t.Run(tt.ip, func(t *testing.T) {
			err := g.Check(netip.MustParseAddr(tt.ip))
			if tt.refused != (err != nil) {
				t.Fatalf("Check(%s) = %v, want refused=%v", tt.ip, err, tt.refused)
			}
			if err != nil && (!errors.Is(err, ErrTargetRefused) || !errors.Is(err, v1.ErrForbidden)) {
				t.Fatalf("error %v does not wrap ErrTargetRefused and ErrForbidden", err)
			}
		})
	}
}

func TestGuardWithAnUnspecifiedServerAddressRefusesThisMachine(t *testing.T) {
	g := NewGuard("0.0.0.0:7443")
	local := localAddrs()
	if len(local) == 0 {
		t.Skip("this machine reports no interface addresses")
	}
	for _, ip := range local {
		if err := g.Check(ip); err == nil {
			t.Errorf("local address %s is allowed", ip)
		}
	}
}

// The cluster network is refused even when it is not a private range
// (--cluster-cidr may be any network): notifiers must not reach other
// namespaces' instances from the server.
func TestGuardRefusesTheClusterNetwork(t *testing.T) {
	g := NewGuard("127.0.0.1:7443").RefuseNetwork("198.18.0.0/16", "the cluster network")
	for _, tt := range []struct {
		ip      string
		refused bool
	}{
		{"198.18.3.7", true},
		{"198.19.0.1", false},
		{"93.184.216.34", false},
	} {
		err := g.Check(netip.MustParseAddr(tt.ip))
		if (err != nil) != tt.refused {
			t.Errorf("%s: %v; want refused %v", tt.ip, err, tt.refused)
		}
		if err != nil && !strings.Contains(err.Error(), "the cluster network") {
			t.Errorf("%s: %v; want the reason named", tt.ip, err)
		}
	}
}
