package agent

import (
	"context"
	"errors"
	"net"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/runtime"
)

type hostNetRuntime struct {
	setupRuntime
	spec *runtime.ContainerSpec
}

func (f *hostNetRuntime) Create(ctx context.Context, s *runtime.ContainerSpec) error {
	f.spec = s
	return f.setupRuntime.Create(ctx, s)
}

// An instance with securityContext.hostNetwork runs in the node's network
// namespace: setup attaches no namespace or interface of its own, and its
// address (status.ip, where probes, DNS and the load balancer reach it)
// is the node's, outside the isolation rules.
func TestHostNetworkInstanceHasTheNodesAddress(t *testing.T) {
	for _, tt := range []struct {
		address string
		want    string
	}{
		{"192.0.2.7", "192.0.2.7"},
		{"192.0.2.7:7445", "192.0.2.7"},
		{"", "127.0.0.1"},
		{"node-a.example", "127.0.0.1"},
	} {
		t.Run(tt.address, func(t *testing.T) {
			rt := &hostNetRuntime{}
			// PrepareNetNS and Setup fail: a host-network setup calls neither.
			nw := &setupNetwork{prepareErr: errors.New("PrepareNetNS called"), setupErr: errors.New("Setup called")}
			w := newSetupWorker(t, &rt.setupRuntime, nw)
			w.a.rt = rt
			w.a.cfg.Address = tt.address
			inst, _, _ := w.state()
			inst.Spec.Template.SecurityContext = &v1.SecurityContext{HostNetwork: true}
			if err := w.setup(context.Background(), false); err != nil {
				t.Fatalf("setup: %v", err)
			}
			if rt.spec == nil || !rt.spec.HostNetwork || rt.spec.NetNSPath != "" {
				t.Fatalf("container spec: want host network, got %+v", rt.spec)
			}
			if !w.ip.Equal(net.ParseIP(tt.want)) {
				t.Errorf("instance address %v; want the node's, %s", w.ip, tt.want)
			}
			if m, ok := w.member(); ok {
				t.Errorf("host-network instance is a member of the isolation rules: %+v", m)
			}
		})
	}
}
