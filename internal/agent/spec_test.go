package agent

import (
	"math"
	"slices"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/network"
)

func TestHostPorts(t *testing.T) {
	tests := []struct {
		name  string
		ports []v1.Port
		want  []network.PortMapping
	}{
		{"no ports publish nothing", nil, nil},
		{"ports without a host port publish nothing", []v1.Port{{Port: 80}, {Port: 53, Protocol: v1.ProtocolUDP}}, nil},
		{"a host port publishes over tcp by default", []v1.Port{{Port: 8080, HostPort: 80}},
			[]network.PortMapping{{HostPort: 80, ContainerPort: 8080, Protocol: "tcp"}}},
		{"an http port publishes over tcp", []v1.Port{{Port: 8080, HostPort: 80, Protocol: v1.ProtocolHTTP}},
			[]network.PortMapping{{HostPort: 80, ContainerPort: 8080, Protocol: "tcp"}}},
		{"a udp port publishes over udp", []v1.Port{{Port: 53, HostPort: 5353, Protocol: v1.ProtocolUDP}},
			[]network.PortMapping{{HostPort: 5353, ContainerPort: 53, Protocol: "udp"}}},
		{"only ports with a host port are published, in order", []v1.Port{
			{Name: "web", Port: 8080, HostPort: 80},
			{Name: "admin", Port: 9090},
			{Name: "dns", Port: 53, HostPort: 53, Protocol: v1.ProtocolUDP},
			{Name: "dns-tcp", Port: 53, HostPort: 53, Protocol: v1.ProtocolTCP},
		}, []network.PortMapping{
			{HostPort: 80, ContainerPort: 8080, Protocol: "tcp"},
			{HostPort: 53, ContainerPort: 53, Protocol: "udp"},
			{HostPort: 53, ContainerPort: 53, Protocol: "tcp"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i := &v1.Instance{Spec: v1.InstanceSpec{Template: v1.Template{Ports: tt.ports}}}
			got := hostPorts(i)
			if !slices.Equal(got, tt.want) || (got == nil) != (tt.want == nil) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestEqualJSON(t *testing.T) {
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	at2 := at
	one, otherOne, two := 1, 1, 2
	ch := make(chan int)
	tests := []struct {
		name string
		a, b any
		want bool
	}{
		{"equal statuses are equal", v1.InstanceStatus{Phase: v1.PhaseRunning, Ready: true}, v1.InstanceStatus{Phase: v1.PhaseRunning, Ready: true}, true},
		{"statuses of another phase differ", v1.InstanceStatus{Phase: v1.PhaseRunning}, v1.InstanceStatus{Phase: v1.PhasePending}, false},
		{"readiness alone makes statuses differ", v1.InstanceStatus{Ready: true}, v1.InstanceStatus{}, false},
		{"pointers to equal values are equal", v1.InstanceStatus{ExitCode: &one, StartedAt: &at}, v1.InstanceStatus{ExitCode: &otherOne, StartedAt: &at2}, true},
		{"pointers to different values differ", v1.InstanceStatus{ExitCode: &one}, v1.InstanceStatus{ExitCode: &two}, false},
		{"a nil pointer differs from a set one", v1.InstanceStatus{}, v1.InstanceStatus{ExitCode: &one}, false},
		{"maps are equal whatever their order", map[string]int{"a": 1, "b": 2}, map[string]int{"b": 2, "a": 1}, true},
		{"a nil and an empty slice differ", []int(nil), []int{}, false},
		{"values of different types that marshal alike are equal", map[string]string{"phase": "Running"}, struct {
			Phase string `json:"phase"`
		}{"Running"}, true},
		{"values that do not marshal are never equal", ch, ch, false},
		{"NaN is not equal to itself", math.NaN(), math.NaN(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := equalJSON(tt.a, tt.b); got != tt.want {
				t.Errorf("equalJSON(%v, %v) = %v, want %v", tt.a, tt.b, got, tt.want)
			}
		})
	}
}
