package controller

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/informer"
	"github.com/gantry-dev/gantry/internal/store"
)

// The write that marks a dead node NotReady committed, but etcd answered
// "request timed out" (an ambiguous commit, as with a slow fsync). The
// retry found the node NotReady already and wrote nothing, and since it
// was not attempt 0 and wrote nothing, setReady never armed the
// eviction: the dead node's instances stayed bound to it for good.
func TestEvictionArmedAfterAmbiguousNotReadyWrite(t *testing.T) {
	var armed atomic.Bool
	var failed atomic.Int32
	s := txnFaultStore(t, func(tr *pb.TxnRequest, commit func() error) error {
		err := commit()
		if !armed.Load() || err != nil {
			return err
		}
		for _, op := range tr.Success {
			if p := op.GetRequestPut(); p != nil && string(p.Key) != "" && failed.Load() == 0 {
				failed.Add(1)
				return rpctypes.ErrGRPCTimeout // committed, but the client is told it timed out
			}
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hb := s.Heartbeats("nodes", 2*time.Second)

	// n1 reads Ready but has no heartbeat: its agent died while no
	// server ran. It has one instance.
	nodeWithInstance(ctx, t, s, true)
	insts := informer.New[*v1.Instance](s, quiet)
	go insts.Run(ctx)
	armed.Store(true)
	c := &NodeLifecycle{Store: s, Heartbeats: hb, Instances: insts, Recorder: &eventLog{}, Log: quiet, EvictAfter: 200 * time.Millisecond}
	go c.Run(ctx)

	deadline := time.Now().Add(4 * time.Second)
	for {
		_, err := store.Get[*v1.Instance](ctx, s, "default", "web-1")
		if errors.Is(err, v1.ErrNotFound) {
			return
		}
		if time.Now().After(deadline) {
			node, _ := store.Get[*v1.Node](ctx, s, "", "n1")
			t.Fatalf("4s after node n1 went NotReady (Ready=%v, ambiguous writes=%d) its instance is still there (EvictAfter 200ms)", node.Status.Ready, failed.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
