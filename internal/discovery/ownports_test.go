package discovery

import (
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// The number fallback must not take an instance port that the instance
// serves under another name the App still has. Old instances served
// metrics on 8080; the App moves metrics to 9100 and puts http on 8080.
// The old instances have no http port: a first version offered them on
// 8080 (their metrics listener) for it. Their metrics stay on 8080.
func TestOwnPortsNumberFallbackSkipsAPortClaimedByName(t *testing.T) {
	inst := []v1.Port{{Name: "metrics", Port: 8080, Protocol: v1.ProtocolHTTP}}
	app := []v1.Port{{Name: "http", Port: 8080, Protocol: v1.ProtocolHTTP}, {Name: "metrics", Port: 9100, Protocol: v1.ProtocolHTTP}}
	got := ownPorts(inst, app)
	if n := (Endpoint{Ports: got}).PortFor(app[0]); n != 0 {
		t.Fatalf("ownPorts = %v: the old instance's metrics listener (8080) is offered for the App's http port; want http: 0", got)
	}
	if n := (Endpoint{Ports: got}).PortFor(app[1]); n != 8080 {
		t.Fatalf("ownPorts = %v: metrics offered on %d; want 8080, where the old instance serves it", got, n)
	}
}
