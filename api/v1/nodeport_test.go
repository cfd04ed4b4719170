package v1

import (
	"strings"
	"testing"
)

// An exposed port's nodePort must lie in the node port range (below it
// are Gantry's own ports), be used once per App, and belong to a port the
// load balancer can tell apart by name and relay to over TCP; a PROXY
// protocol header is only for such a port.
func TestExposedPortValidation(t *testing.T) {
	for _, tc := range []struct {
		name, ports string
		want        string // a substring of the error; "" for valid
	}{
		{"a node port in the range is valid", "[{name: pg, port: 5432, protocol: tcp, expose: tcp, nodePort: 30432}]", ""},
		{"no node port lets one be chosen", "[{name: pg, port: 5432, protocol: tcp, expose: tcp}]", ""},
		{"a single unnamed exposed port is named by default", "[{port: 5432, protocol: tcp, expose: tcp}]", ""},
		{"named exposed ports are valid", "[{name: a, port: 1, protocol: tcp, expose: tcp}, {name: b, port: 2, protocol: tcp, expose: tcp}]", ""},
		{"the API's port is refused", "[{name: pg, port: 5432, protocol: tcp, expose: tcp, nodePort: 7443}]", "spec.ports[0].nodePort: must be 30000-32767"},
		{"the bridge DNS port is refused", "[{name: dns, port: 53, protocol: tcp, expose: tcp, nodePort: 53}]", "must be 30000-32767"},
		{"a port above the range is refused", "[{name: pg, port: 5432, protocol: tcp, expose: tcp, nodePort: 40000}]", "must be 30000-32767"},
		{"one node port for two ports is refused", "[{name: a, port: 1, protocol: tcp, expose: tcp, nodePort: 30001}, {name: b, port: 2, protocol: tcp, expose: tcp, nodePort: 30001}]",
			"spec.ports[1].nodePort: 30001 is already used by ports[0]"},
		{"an unnamed exposed port among several is refused", "[{name: web, port: 80}, {port: 5432, protocol: tcp, expose: tcp}]",
			"spec.ports[1].name: is required for an exposed port"},
		{"an exposed udp port is refused", "[{name: dns, port: 53, protocol: udp, expose: tcp}]", "spec.ports[0].expose: applies to tcp and http ports only"},
		{"PROXY protocol v1 on an exposed port is valid", "[{name: pg, port: 5432, protocol: tcp, expose: tcp, proxyProtocol: v1}]", ""},
		{"PROXY protocol v2 on an exposed port is valid", "[{name: pg, port: 5432, protocol: tcp, expose: tcp, proxyProtocol: v2}]", ""},
		{"PROXY protocol without expose is refused", "[{name: pg, port: 5432, protocol: tcp, proxyProtocol: v2}]",
			"spec.ports[0].proxyProtocol: only applies with expose: tcp"},
		{"an unknown PROXY protocol version is refused", "[{name: pg, port: 5432, protocol: tcp, expose: tcp, proxyProtocol: \"2\"}]",
			"spec.ports[0].proxyProtocol: must be v1 or v2 (got \"2\")"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeManifest([]byte("kind: App\nname: x\nimage: a\nports: " + tc.ports))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("accepted; want an error saying %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
}
