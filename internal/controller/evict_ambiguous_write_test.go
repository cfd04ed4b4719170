package controller

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/informer"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// The write that marks a dead node NotReady committed, but etcd answered
// "request timed out" (an ambiguous commit, as with a slow fsync). The
// retry found the node NotReady already and wrote nothing, and since it
// was not attempt 0 and wrote nothing, setReady never armed the
// eviction: the dead node's instances stayed bound to it for good.
func TestEvictionArmedAfterAmbiguousNotReadyWrite(t *testing.T) {
	e := storetest.Embedded(t)
	var armed atomic.Bool
	var failed atomic.Int32
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: e.Client.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			err := invoker(ctx, method, req, reply, cc, opts...)
			if method == "/etcdserverpb.KV/Txn" && armed.Load() && err == nil {
				if tr, ok := req.(*pb.TxnRequest); ok {
					for _, op := range tr.Success {
						if p := op.GetRequestPut(); p != nil && string(p.Key) != "" && failed.Load() == 0 {
							failed.Add(1)
							return rpctypes.ErrGRPCTimeout // committed, but the client is told it timed out
						}
					}
				}
			}
			return err
		})},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	s := store.New(cli, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hb := s.Heartbeats("nodes", 2*time.Second)

	// n1 reads Ready but has no heartbeat: its agent died while no
	// server ran. It has one instance.
	n := &v1.Node{TypeMeta: v1.TypeMeta{Kind: "Node"}, Metadata: v1.ObjectMeta{Name: "n1"}}
	n.Status.Ready = true
	if err := s.Create(ctx, n); err != nil {
		t.Fatal(err)
	}
	inst := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: "web-1", Namespace: "default"},
		Spec: v1.InstanceSpec{App: "web", Revision: 1, Node: "n1"}}
	if err := s.Create(ctx, inst); err != nil {
		t.Fatal(err)
	}
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
