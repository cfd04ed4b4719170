package controller

import (
	"context"
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

// A node that comes back (its heartbeat lease reappears) while etcd is
// briefly slow: the one write that marks it Ready fails with etcd's
// "request timed out" (a slow fsync). The node keeps its instances (the
// eviction armed when it went NotReady is called off at once), and the
// write is tried again until the node reads Ready: keep-alives of the
// same lease make no new event.
func TestNodeReadinessWriteIsRetried(t *testing.T) {
	var failTxn atomic.Bool
	var failed atomic.Int32
	s := txnFaultStore(t, func(_ *pb.TxnRequest, commit func() error) error {
		if failTxn.Load() {
			failed.Add(1)
			return rpctypes.ErrGRPCTimeout
		}
		return commit()
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hb := s.Heartbeats("nodes", 2*time.Second)

	// n1 is NotReady (its agent was away); it has one instance.
	nodeWithInstance(ctx, t, s, false)
	insts := informer.New[*v1.Instance](s, quiet)
	go insts.Run(ctx)
	c := &NodeLifecycle{Store: s, Heartbeats: hb, Instances: insts, Recorder: &eventLog{}, Log: quiet, EvictAfter: 1500 * time.Millisecond}
	go c.Run(ctx)
	time.Sleep(300 * time.Millisecond) // listed: n1 NotReady, eviction armed

	// The agent comes back; etcd times out the one write that follows.
	failTxn.Store(true)
	if err := hb.Beat(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(2 * time.Second); failed.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	failTxn.Store(false) // the blip is over
	if failed.Load() == 0 {
		t.Skip("no write was attempted while etcd was failing")
	}
	// The agent keeps heartbeating.
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(300 * time.Millisecond) {
		if err := hb.Beat(ctx, "n1"); err != nil {
			t.Fatal(err)
		}
	}
	node, err := store.Get[*v1.Node](ctx, s, "", "n1")
	if err != nil {
		t.Fatal(err)
	}
	_, ierr := store.Get[*v1.Instance](ctx, s, "default", "web-1")
	if !node.Status.Ready || ierr != nil {
		t.Fatalf("3s after a live node resumed heartbeats and one write failed transiently: node Ready=%v, its instance: %v", node.Status.Ready, ierr)
	}
}

// txnFaultStore is a store on a private etcd whose client passes every
// transaction through intercept, which may commit it (commit) and then
// answer what etcd might have: a timeout, say.
func txnFaultStore(t *testing.T, intercept func(req *pb.TxnRequest, commit func() error) error) *store.Store {
	t.Helper()
	e := storetest.Embedded(t)
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: e.Client.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			commit := func() error { return invoker(ctx, method, req, reply, cc, opts...) }
			if tr, ok := req.(*pb.TxnRequest); ok && method == "/etcdserverpb.KV/Txn" {
				return intercept(tr, commit)
			}
			return commit()
		})},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return store.New(cli, "")
}

// nodeWithInstance stores node n1, Ready or not, with instance
// default/web-1 bound to it.
func nodeWithInstance(ctx context.Context, t *testing.T, s *store.Store, ready bool) {
	t.Helper()
	n := &v1.Node{TypeMeta: v1.TypeMeta{Kind: "Node"}, Metadata: v1.ObjectMeta{Name: "n1"}}
	n.Status.Ready = ready
	if err := s.Create(ctx, n); err != nil {
		t.Fatal(err)
	}
	inst := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: "web-1", Namespace: "default"},
		Spec: v1.InstanceSpec{App: "web", Revision: 1, Node: "n1"}}
	if err := s.Create(ctx, inst); err != nil {
		t.Fatal(err)
	}
}
