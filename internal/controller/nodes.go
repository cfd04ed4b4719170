package controller

import (
	"context"
	"errors"
	"fmt"
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
	// evicted holds the nodes an eviction pass has run for and that
	// have not been seen ready since: an instance of one marked for
	// deletion later (a finished one, kept) is deleted outright.
	evicted map[string]bool
	// alive is the latest heartbeat verdict of each node, so that a
	// retried readiness write gives up once a newer verdict came.
	verdicts map[string]verdict
}

// verdict is the latest heartbeat verdict on a node, and its number: a
// retried write of an older one writes nothing.
type verdict struct {
	ready bool
	gen   uint64
}

// Run watches heartbeats until ctx ends.
func (c *NodeLifecycle) Run(ctx context.Context) {
	c.timers = map[string]*time.Timer{}
	c.verdicts = map[string]verdict{}
	c.evicted = map[string]bool{}
	if c.EvictAfter == 0 {
		c.EvictAfter = 5 * time.Second
	}
	log := c.Log.With("controller", "nodes")
	c.Instances.OnChange(func(old, i *v1.Instance, deleted bool) {
		if deleted || i.Metadata.Deleting == nil || i.Spec.Node == "" || (old != nil && old.Metadata.Deleting != nil) {
			return
		}
		c.mu.Lock()
		evicted := c.evicted[i.Spec.Node]
		c.mu.Unlock()
		if evicted {
			// Only the dead node's agent would finish this delete.
			c.arm(ctx, i.Spec.Node, 0, 0)
		}
	})
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
			c.observe(ctx, n.Metadata.Name, alive[n.Metadata.Name])
		}
		go c.evictOrphans(ctx, nodes)
		for ev := range c.Heartbeats.Watch(ctx, rev+1) {
			if ev.Err != nil {
				log.Warn("watch heartbeats", "err", ev.Err)
				break
			}
			c.observe(ctx, ev.Name, ev.Alive)
		}
		informer.Sleep(ctx, 200*time.Millisecond)
	}
	c.mu.Lock()
	for _, t := range c.timers {
		t.Stop()
	}
	c.mu.Unlock()
}

// observe takes a heartbeat verdict on a node: a node that is alive
// keeps its instances at once, and its readiness is written.
func (c *NodeLifecycle) observe(ctx context.Context, name string, ready bool) {
	c.mu.Lock()
	v := verdict{ready: ready, gen: c.verdicts[name].gen + 1}
	c.verdicts[name] = v
	c.mu.Unlock()
	if ready {
		c.disarm(name)
	}
	c.setReady(ctx, name, v, 0)
}

// current reports whether v is still the latest verdict on a node.
func (c *NodeLifecycle) current(name string, v verdict) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.verdicts[name] == v
}

// setReady writes a node's readiness from verdict v, while v is the
// latest: a write that etcd fails for a passing reason is tried again
// with backoff (the heartbeat watch reports a change once), and one of a
// verdict a newer one has replaced writes nothing, checked inside the
// write so that it cannot land after the newer one's.
func (c *NodeLifecycle) setReady(ctx context.Context, name string, v verdict, attempt int) {
	ready, wrote := v.ready, false
	n, err := store.Mutate(ctx, c.Store, "", name, func(n *v1.Node) error {
		wrote = false
		if n.Status.Ready == ready || !c.current(name, v) {
			return store.ErrUnchanged
		}
		n.Status.Ready = ready
		if ready {
			n.Status.Message = ""
		} else {
			n.Status.Message = "heartbeat lost: the node's agent stopped reporting"
		}
		wrote = true
		return nil
	})
	if !c.current(name, v) {
		if wrote {
			// A newer verdict came while this one was being written,
			// and its own write may have seen nothing to change: write
			// the newest again over this one.
			c.mu.Lock()
			latest := c.verdicts[name]
			c.mu.Unlock()
			c.setReady(ctx, name, latest, attempt+1)
		}
		return
	}
	if errors.Is(err, v1.ErrNotFound) {
		if !ready {
			// The Node was deleted (its lease goes with it): instances
			// still bound to it must move as a dead node's do, unless
			// its agent registers it again in time.
			c.arm(ctx, name, c.EvictAfter, 0)
		}
		return
	}
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		if !errors.Is(err, v1.ErrUnavailable) {
			c.Log.Error("set node readiness", "node", name, "ready", ready, "err", err)
			return
		}
		c.Log.Warn("set node readiness; trying again", "node", name, "ready", ready, "err", err)
		time.AfterFunc(min(time.Duration(100<<min(attempt, 6))*time.Millisecond, 5*time.Second), func() {
			if ctx.Err() == nil && c.current(name, v) {
				c.setReady(ctx, name, v, attempt+1)
			}
		})
		return
	}
	if ready {
		return
	}
	if wrote {
		c.Recorder.Eventf(ctx, n, v1.EventWarning, "NodeNotReady", "node %s stopped sending heartbeats; its instances move elsewhere in %s unless it returns", name, c.EvictAfter)
	}
	// A verdict newly written starts the countdown. One found already
	// written (the server restarted, the heartbeat watch listed again,
	// or a write whose answer was lost committed) starts it only if none
	// runs: restarting it would put eviction off for as long as the
	// watch keeps failing, and not starting it would leave a dead node's
	// instances bound to it for good.
	if wrote || !c.armed(name) {
		c.arm(ctx, name, c.EvictAfter, 0)
	}
}

// armed reports whether a node has an eviction timer, running or fired,
// since it was last seen ready.
func (c *NodeLifecycle) armed(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.timers[name]
	return ok
}

// arm (re)starts the eviction timer of a node.
func (c *NodeLifecycle) arm(ctx context.Context, name string, after time.Duration, attempt int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ctx.Err() != nil {
		return
	}
	if t, ok := c.timers[name]; ok {
		t.Stop()
	}
	c.timers[name] = time.AfterFunc(after, func() { c.evict(ctx, name, attempt) })
}

func (c *NodeLifecycle) disarm(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.timers[name]; ok {
		t.Stop()
		delete(c.timers, name)
	}
	delete(c.evicted, name)
}

// evictRetryMax bounds the wait between attempts to evict a node's
// instances.
const evictRetryMax = 30 * time.Second

// evict deletes the instances of a node that is still NotReady, or that
// no longer exists. It tries again, backing off, until it has deleted
// them all: a dead node sends no heartbeat that would arm another try,
// and an instance left bound to it would never be replaced.
func (c *NodeLifecycle) evict(ctx context.Context, name string, attempt int) {
	if ctx.Err() != nil {
		return
	}
	retry := func(what string, err error) {
		d := min(time.Second<<min(attempt, 5), evictRetryMax)
		c.Log.Warn("evict a node's instances: trying again", "node", name, "step", what, "in", d, "err", err)
		c.arm(ctx, name, d, attempt+1)
	}
	n, err := store.Get[*v1.Node](ctx, c.Store, "", name)
	why := "is NotReady"
	switch {
	case errors.Is(err, v1.ErrNotFound):
		why = "was deleted"
	case err != nil:
		retry("read the node", err)
		return
	case n.Status.Ready:
		return
	}
	// The stored readiness lags the heartbeats: a node whose heartbeat
	// came back as the timer fired keeps its instances.
	c.mu.Lock()
	alive := c.verdicts[name].ready
	c.mu.Unlock()
	if alive {
		return
	}
	select {
	case <-c.Instances.Synced():
	default:
		retry("list instances", errors.New("the instance cache has not listed yet"))
		return
	}
	// Marked before the list: an instance whose delete is asked for
	// while this pass runs, after the list kept it, has the handler
	// arm another pass.
	c.mu.Lock()
	if c.evicted == nil {
		c.evicted = map[string]bool{}
	}
	c.evicted[name] = true
	c.mu.Unlock()
	k := store.KindFor[*v1.Instance]()
	var failed error
	// A finished instance stays, with its logs, until it is deleted
	// (docs/manifest.md, restartPolicy): deleting it would have the
	// rollout replace it and run finished work again. One whose delete
	// was asked for goes: only its node's agent could finish that.
	keep := func(i *v1.Instance) bool {
		return i.Status.Finished() && i.Metadata.Deleting == nil
	}
	for _, i := range c.Instances.List(func(i *v1.Instance) bool { return i.Spec.Node == name && !keep(i) }) {
		_, err := c.Store.Delete(ctx, k, i.Metadata.Namespace, i.Metadata.Name, 0)
		if errors.Is(err, v1.ErrNotFound) {
			continue
		}
		if err != nil {
			failed = fmt.Errorf("delete instance %s: %w", i.Metadata.Key(), err)
			continue
		}
		c.Recorder.Eventf(ctx, i, v1.EventWarning, "Rescheduled", "node %s %s; instance %s removed so that a replacement is placed on another node", name, why, i.Metadata.Name)
	}
	if failed != nil {
		retry("delete instances", failed)
	}
}

// evictOrphans arms the eviction of nodes that instances are bound to but
// that do not exist (deleted while no server ran), once the instance
// cache has listed.
func (c *NodeLifecycle) evictOrphans(ctx context.Context, nodes []*v1.Node) {
	select {
	case <-c.Instances.Synced():
	case <-ctx.Done():
		return
	}
	known := map[string]bool{}
	for _, n := range nodes {
		known[n.Metadata.Name] = true
	}
	armed := map[string]bool{}
	for _, i := range c.Instances.List(func(i *v1.Instance) bool { return i.Spec.Node != "" && !known[i.Spec.Node] }) {
		// A countdown already running goes on: restarting it on every
		// relist would put eviction off while the watch keeps failing.
		if !armed[i.Spec.Node] {
			armed[i.Spec.Node] = true
			if !c.armed(i.Spec.Node) {
				c.arm(ctx, i.Spec.Node, c.EvictAfter, 0)
			}
		}
	}
}
