package scheduler

import (
	"slices"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

func TestRequestFor(t *testing.T) {
	inst := newInstance("web-1", "web", 250, 128*mi)
	inst.Metadata.Namespace = "team"
	inst.Spec.Template.Placement = v1.PlacementSpread
	inst.Spec.Template.Constraints = []v1.Constraint{{Label: "disk", Value: "ssd"}}
	inst.Spec.Template.Ports = []v1.Port{
		{Name: "http", Port: 8080, Protocol: v1.ProtocolHTTP, HostPort: 80},
		{Name: "dns", Port: 53, Protocol: v1.ProtocolUDP, HostPort: 53},
		{Name: "admin", Port: 9000, Protocol: v1.ProtocolTCP},
	}
	r := RequestFor(inst)
	if r.App != "team/web" || r.CPU != 250 || r.Memory != 128*mi || r.Placement != v1.PlacementSpread || len(r.Constraints) != 1 {
		t.Errorf("request %+v", r)
	}
	want := []HostPort{{Port: 80, Protocol: "tcp"}, {Port: 53, Protocol: "udp"}}
	if !slices.Equal(r.HostPorts, want) {
		t.Errorf("host ports %v, want %v (http publishes over tcp; unpublished ports take none)", r.HostPorts, want)
	}
	inst.Spec.App = ""
	if r := RequestFor(inst); r.App != "" {
		t.Errorf("an instance of no app has App %q, want empty", r.App)
	}
}

func TestFitKey(t *testing.T) {
	base := Request{App: "a/web", CPU: 100, Memory: mi, Constraints: []v1.Constraint{{Label: "disk", Value: "ssd"}}, HostPorts: []HostPort{{80, "tcp"}}}
	with := func(f func(r *Request)) Request {
		r := base
		f(&r)
		return r
	}
	tests := []struct {
		name  string
		other Request
		same  bool
	}{
		{"another app with the same needs fits the same nodes", with(func(r *Request) { r.App = "b/api" }), true},
		{"another placement strategy fits the same nodes", with(func(r *Request) { r.Placement = v1.PlacementSpread }), true},
		{"more cpu is a different request", with(func(r *Request) { r.CPU = 101 }), false},
		{"more memory is a different request", with(func(r *Request) { r.Memory = mi + 1 }), false},
		{"the same port over udp is a different request", with(func(r *Request) { r.HostPorts = []HostPort{{80, "udp"}} }), false},
		{"no host ports is a different request", with(func(r *Request) { r.HostPorts = nil }), false},
		{"another constraint value is a different request", with(func(r *Request) { r.Constraints = []v1.Constraint{{Label: "disk", Value: "hdd"}} }), false},
		{"values that run together differently are told apart", with(func(r *Request) {
			r.Constraints = []v1.Constraint{{Label: "disk", Op: "in", Values: []string{"s", "sd"}}}
		}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := string(fitKey(nil, &base)), string(fitKey(nil, &tt.other))
			if (a == b) != tt.same {
				t.Errorf("keys %q and %q: equal = %v, want %v", a, b, a == b, tt.same)
			}
		})
	}
}
