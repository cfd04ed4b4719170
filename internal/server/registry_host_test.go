package server

import (
	"net"
	"testing"
)

// A registry listening on every address was advertised as 127.0.0.1 even
// by a server that takes joins (the guide's "More machines" set-up): on a
// joined node that address is the node itself, so no image of the
// built-in registry could be pulled there.
func TestRegistryHost(t *testing.T) {
	out := outboundIP()
	tests := []struct{ reg, api, want string }{
		{":5000", "127.0.0.1:7443", "127.0.0.1:5000"},
		{"0.0.0.0:5000", "localhost:7443", "127.0.0.1:5000"},
		{":5000", "0.0.0.0:7443", net.JoinHostPort(out, "5000")},
		{"[::]:5000", "192.0.2.7:7443", net.JoinHostPort(out, "5000")},
		{"10.1.2.3:5000", "0.0.0.0:7443", "10.1.2.3:5000"},
		{"127.0.0.1:5000", "0.0.0.0:7443", "127.0.0.1:5000"},
	}
	for _, tt := range tests {
		if got := registryHost(tt.reg, tt.api); got != tt.want {
			t.Errorf("registryHost(%q, %q) = %q; want %q", tt.reg, tt.api, got, tt.want)
		}
	}
}
