package agent

import (
	"context"
	"errors"
	"fmt"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/network"
)

// noIsolationNetwork is the node network on a kernel where bridged
// traffic cannot be passed through iptables (no br_netfilter): every
// SetPolicy fails with ErrUnsupported, and no isolation rule filters the
// instance's traffic at all.
type noIsolationNetwork struct{ setupNetwork }

func (f *noIsolationNetwork) SetPolicy(context.Context, []network.Member) error {
	return fmt.Errorf("network: namespace isolation: load br_netfilter: %w", v1.ErrUnsupported)
}

// Without br_netfilter, bridged traffic bypasses iptables: an instance
// started anyway reached, and was reached by, every other namespace. The
// agent logged a warning and started it. It does not start now.
func TestInstanceDoesNotStartWithoutIsolation(t *testing.T) {
	rt := &setupRuntime{}
	nw := &noIsolationNetwork{}
	w := newSetupWorker(t, rt, &nw.setupNetwork)
	w.a.net = nw
	err := w.setup(context.Background(), false)
	if err == nil || !errors.Is(err, v1.ErrUnsupported) {
		t.Fatalf("setup = %v with isolation unavailable (SetPolicy: ErrUnsupported); want it to fail so the task is never started (runtime calls: %s)", err, rt.log())
	}
}
