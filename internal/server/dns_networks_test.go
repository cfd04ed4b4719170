package server

import (
	"net/netip"
	"slices"
	"testing"
)

// The DNS server takes clients in the cluster CIDR that no snapshot lists
// for instances (route hosts of other namespaces are not theirs); the
// wiring gives it that CIDR, the API server's default when none is set.
func TestDNSInstanceNetworksAreTheClusterCIDR(t *testing.T) {
	for _, tc := range []struct{ cidr, want string }{
		{"10.99.0.0/16", "10.99.0.0/16"},
		{"10.99.3.4/16", "10.99.0.0/16"},
		{"", "10.77.0.0/16"},
	} {
		got, err := instanceNetworks(tc.cidr)
		if err != nil {
			t.Fatalf("%q: %v", tc.cidr, err)
		}
		if want := []netip.Prefix{netip.MustParsePrefix(tc.want)}; !slices.Equal(got, want) {
			t.Fatalf("%q: instance networks %v, want %v", tc.cidr, got, want)
		}
	}
	if _, err := instanceNetworks("10.99.0.0"); err == nil {
		t.Fatal("a cluster CIDR without a prefix length was taken")
	}
}
