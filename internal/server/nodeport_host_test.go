package server

import "testing"

// Node ports listened on every address whatever --ingress-addr said, so
// a load balancer kept on loopback behind a proxy still published them
// (review helper-164).
func TestNodePortsListenWhereTheLoadBalancerDoes(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{":8080", ""},
		{"127.0.0.1:8080", "127.0.0.1"},
		{"[::1]:8080", "::1"},
		{"192.0.2.10:80", "192.0.2.10"},
		{"0.0.0.0:8080", "0.0.0.0"},
		{"", ""},
	} {
		if got := nodePortHost(tc.addr); got != tc.want {
			t.Errorf("nodePortHost(%q) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}
