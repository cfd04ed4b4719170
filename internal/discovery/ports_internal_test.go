package discovery

import (
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// An App may have several unnamed ports (names are needed only to expose
// one). They were all keyed by the empty name, so the App's unnamed http
// port 8080 was served on the instance's first unnamed port, 5432: the
// load balancer sent HTTP to the database port with no rollout at all.
func TestUnnamedPortsKeepTheirOwnNumbers(t *testing.T) {
	db := v1.Port{Port: 5432, Protocol: v1.ProtocolTCP}
	web := v1.Port{Port: 8080, Protocol: v1.ProtocolHTTP}
	dns := v1.Port{Port: 5432, Protocol: v1.ProtocolUDP}
	tests := []struct {
		name      string
		inst, app []v1.Port
		want      map[string]int // App port key → port the instance serves it on
	}{
		{"same template", []v1.Port{db, web}, []v1.Port{db, web}, map[string]int{"5432/tcp": 5432, "8080/tcp": 8080}},
		{"same template, other order", []v1.Port{web, db}, []v1.Port{db, web}, map[string]int{"5432/tcp": 5432, "8080/tcp": 8080}},
		{"one number on both transports", []v1.Port{db, dns}, []v1.Port{db, dns}, map[string]int{"5432/tcp": 5432, "5432/udp": 5432}},
		{"a port added by the rollout", []v1.Port{db}, []v1.Port{db, web}, map[string]int{"5432/tcp": 5432, "8080/tcp": 0}},
		{"an unnamed port now named", []v1.Port{db, web}, []v1.Port{db, {Name: "web", Port: 8080, Protocol: v1.ProtocolHTTP}}, map[string]int{"5432/tcp": 5432, "web": 8080}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep := Endpoint{Ports: ownPorts(tt.inst, tt.app)}
			for _, p := range tt.app {
				if got := ep.PortFor(p); got != tt.want[PortKey(p)] {
					t.Errorf("App port %s is served on %d (ownPorts %v); want %d", PortKey(p), got, ep.Ports, tt.want[PortKey(p)])
				}
			}
		})
	}
}
