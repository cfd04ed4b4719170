package agent

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/network"
)

// orderNetwork records, in order, the policies applied and the
// teardowns; the first SetPolicy is held after it got its member list,
// as a slow iptables-restore holds it.
type orderNetwork struct {
	Network
	mu      sync.Mutex
	log     []string
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (f *orderNetwork) SetPolicy(_ context.Context, members []network.Member) error {
	first := false
	f.once.Do(func() { first = true })
	if first {
		close(f.entered)
		<-f.release
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s := "policy:"
	for _, m := range members {
		s += " " + m.IP.String() + "=" + m.Namespace
	}
	f.log = append(f.log, s)
	return nil
}

func (f *orderNetwork) Teardown(context.Context, string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append(f.log, "teardown (CNI DEL frees the address)")
	return nil
}

// A policy being written while an instance was terminated could land
// after its address had been freed (Teardown), with the member list it
// took before: the freed address counted as the old instance's namespace
// until the next policy. leavePolicy waits for a policy being written.
func TestTerminatedInstanceIsNotReadmittedByAPolicyInFlight(t *testing.T) {
	nw := &orderNetwork{entered: make(chan struct{}), release: make(chan struct{})}
	a := &Agent{net: nw, log: slog.New(slog.DiscardHandler), workers: map[string]*worker{}, policy: make(chan struct{}, 1)}
	inst := &v1.Instance{Metadata: v1.ObjectMeta{Namespace: "default", Name: "web-1", UID: "u1"}}
	w := newWorker(a, inst)
	w.ip = net.IPv4(10, 77, 1, 9)
	a.workers[w.key] = w

	applied := make(chan struct{})
	// syncPolicy's tick, held once it has its member list, with 10.77.1.9.
	go func() { defer close(applied); a.applyPolicy(context.Background()) }()
	<-nw.entered
	left := make(chan struct{})
	go func() {
		defer close(left)
		w.leavePolicy() // terminate's network part
		a.net.Teardown(context.Background(), w.id)
	}()
	close(nw.release)
	<-applied
	<-left

	nw.mu.Lock()
	defer nw.mu.Unlock()
	if want := []string{"policy: 10.77.1.9=default", "teardown (CNI DEL frees the address)"}; !slices.Equal(nw.log, want) {
		t.Fatalf("order of policy and teardown: %q, want %q (the policy in flight first: Teardown drops the address from it)", nw.log, want)
	}
	if _, ok := w.member(); ok {
		t.Fatal("the terminated instance is still a member of the next policy")
	}
}
