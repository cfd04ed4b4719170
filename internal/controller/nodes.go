package controller

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/informer"
	"github.com/gantry-dev/gantry/internal/store"
)

// NodeLifecycle turns heartbeat leases into node readiness and moves the
// instances of a node that stays NotReady longer than EvictAfter: it
// deletes them, and the rollout controller creates replacements that the
// scheduler places elsewhere. If the node comes back, its agent finds
// containers with no instance and stops them.
type NodeLifecycle struct {
	Store      *store.Store
	Heartbeats *store.Heartbeats
	Instances  *informer.Informer[*v1.Instance]
	Recorder   Recorder
	Log        *slog.Logger
	// EvictAfter is how long a node may be NotReady before its
	// instances are rescheduled.
	EvictAfter time.Duration

	mu     sync.Mutex
	timers map[string]*time.Timer
}

// Run watches heartbeats until ctx ends.
func (c *NodeLifecycle) Run(ctx context.Context) {
	c.timers = map[string]*time.Timer{}
	if c.EvictAfter == 0 {
		c.EvictAfter = 5 * time.Second
	}
	log := c.Log.With("controller", "nodes")
	for ctx.Err() == nil {
		alive, rev, err := c.Heartbeats.Alive(ctx)
		if err != nil {
			log.Warn("read heartbeats", "err", err)
			informer.Sleep(ctx, time.Second)
			continue
		}
		nodes, _, err := store.List[*v1.Node](ctx, c.Store, store.ListOptions{})
		if err != nil {
			log.Warn("list nodes", "err", err)
			informer.Sleep(ctx, time.Second)
			continue
		}
		for _, n := range nodes {
			c.setReady(ctx, n.Metadata.Name, alive[n.Metadata.Name])
		}
		for ev := range c.Heartbeats.Watch(ctx, rev+1) {
			if ev.Err != nil {
				log.Warn("watch heartbeats", "err", ev.Err)
				break
			}
			c.setReady(ctx, ev.Name, ev.Alive)
		}
		informer.Sleep(ctx, 200*time.Millisecond)
	}
	c.mu.Lock()
	for _, t := range c.timers {
		t.Stop()
	}
	c.mu.Unlock()
}

func (c *NodeLifecycle) setReady(ctx context.Context, name string, ready bool) {
	n, err := store.Mutate(ctx, c.Store, "", name, func(n *v1.Node) error {
		if n.Status.Ready == ready {
			return store.ErrUnchanged
		}
		n.Status.Ready = ready
		if ready {
			n.Status.Message = ""
		} else {
			n.Status.Message = "heartbeat lost: the node's agent stopped reporting"
		}
		return nil
	})
	if errors.Is(err, v1.ErrNotFound) {
		return
	}
	if err != nil {
		c.Log.Warn("set node readiness", "node", name, "err", err)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.timers[name]; ok {
		t.Stop()
		delete(c.timers, name)
	}
	if ready {
		return
	}
	c.Recorder.Eventf(ctx, n, v1.EventWarning, "NodeNotReady", "node %s stopped sending heartbeats; its instances move elsewhere in %s unless it returns", name, c.EvictAfter)
	c.timers[name] = time.AfterFunc(c.EvictAfter, func() { c.evict(ctx, name) })
}

// evict deletes the instances of a node that is still NotReady.
func (c *NodeLifecycle) evict(ctx context.Context, name string) {
	n, err := store.Get[*v1.Node](ctx, c.Store, "", name)
	if err != nil || n.Status.Ready {
		return
	}
	k := store.KindFor[*v1.Instance]()
	for _, i := range c.Instances.List(func(i *v1.Instance) bool { return i.Spec.Node == name }) {
		_, err := c.Store.Delete(ctx, k, i.Metadata.Namespace, i.Metadata.Name, 0)
		if err != nil && !errors.Is(err, v1.ErrNotFound) {
			c.Log.Warn("evict instance", "instance", i.Metadata.Key(), "err", err)
			continue
		}
		c.Recorder.Eventf(ctx, i, v1.EventWarning, "Rescheduled", "node %s is NotReady; instance %s removed so that a replacement is placed on another node", name, i.Metadata.Name)
	}
}
