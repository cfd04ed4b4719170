package v1

import (
	"strings"
	"testing"
)

// Two ports of one App asking for the same host port (and transport) can
// never both be published: the second port mapping collides with the
// first on every node. Validation refuses duplicate container ports but
// once not duplicate host ports: the App was accepted (and the scheduler
// placed it) instead of getting a 422 naming the field.
func TestDuplicateHostPortIsRefused(t *testing.T) {
	a := &App{
		TypeMeta: TypeMeta{Kind: "App", APIVersion: Version},
		Metadata: ObjectMeta{Name: "web", Namespace: "default"},
		Spec: AppSpec{Template: Template{
			Image: "busybox",
			Ports: []Port{
				{Name: "a", Port: 80, Protocol: ProtocolTCP, HostPort: 8080},
				{Name: "b", Port: 81, Protocol: ProtocolTCP, HostPort: 8080},
			},
		}},
	}
	errs := Validate(a)
	for _, e := range errs {
		if strings.HasSuffix(e.Field, "ports[1].hostPort") {
			return
		}
	}
	t.Fatalf("two ports on host port 8080/tcp accepted; errors: %v", errs)
}
