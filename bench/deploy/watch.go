package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
)

// instTimes is when the benchmark's watch first saw each step of one
// instance, plus what the agent wrote in its status.
type instTimes struct {
	key       string // namespace/name
	image     string // spec.image: the reference pinned to a digest
	created   time.Time
	bound     time.Time // spec.node set by the scheduler
	running   time.Time // status.phase Running
	startedAt time.Time // status.startedAt, the agent's clock
	deleted   time.Time
}

// appTrack follows the instances of one App.
type appTrack struct {
	want       int
	insts      map[string]*instTimes
	nRunning   int
	allRunning chan struct{}
	live       int
	deleting   bool
	gone       chan struct{}
}

// tracker consumes one watch on the Instances of a namespace, started
// before any App of the benchmark is applied, and records per App when
// its instances were created, bound, Running and deleted. A single
// long-lived watch is used rather than one per deploy: it is streaming
// live changes when each apply happens, so no event is replayed from an
// older revision (which would add a false delay).
type tracker struct {
	mu   sync.Mutex
	apps map[string]*appTrack
	// failed closes when the watch ends with an error, kept in err.
	failed chan struct{}
	err    error
}

// startTracker opens the watch and returns once it has delivered the
// existing instances (the first bookmark).
func startTracker(ctx context.Context, api *client.Client, ns string) (*tracker, error) {
	t := &tracker{apps: map[string]*appTrack{}, failed: make(chan struct{})}
	synced := make(chan struct{})
	evs := api.Watch(ctx, "Instance", ns, client.WatchOptions{})
	go func() {
		once := sync.Once{}
		for ev := range evs {
			now := time.Now()
			switch ev.Type {
			case "ERROR":
				t.err = fmt.Errorf("instance watch: %w", ev.Err)
				close(t.failed)
				return
			case "BOOKMARK":
				once.Do(func() { close(synced) })
				continue
			}
			if i, ok := ev.Object.(*v1.Instance); ok {
				t.observe(ev.Type, i, now)
			}
		}
	}()
	select {
	case <-synced:
		return t, nil
	case <-t.failed:
		return nil, t.err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("instance watch: no bookmark in 30s")
	}
}

// expect registers an App before it is applied.
func (t *tracker) expect(app string, replicas int) *appTrack {
	t.mu.Lock()
	defer t.mu.Unlock()
	a := &appTrack{want: replicas, insts: map[string]*instTimes{}, allRunning: make(chan struct{}), gone: make(chan struct{})}
	t.apps[app] = a
	return a
}

// markDeleting says the App was deleted: gone closes once its last
// instance is.
func (t *tracker) markDeleting(app string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.apps[app]
	a.deleting = true
	if a.live == 0 {
		close(a.gone)
	}
}

func (t *tracker) observe(typ string, i *v1.Instance, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.apps[i.Spec.App]
	if a == nil {
		return
	}
	key := i.Metadata.Key()
	it := a.insts[key]
	if it == nil {
		if typ == "DELETED" {
			return
		}
		it = &instTimes{key: key, image: i.Spec.Image, created: now}
		a.insts[key] = it
		a.live++
	}
	if typ == "DELETED" {
		if it.deleted.IsZero() {
			it.deleted = now
			a.live--
			if a.deleting && a.live == 0 {
				close(a.gone)
			}
		}
		return
	}
	if it.bound.IsZero() && i.Spec.Node != "" {
		it.bound = now
	}
	if it.running.IsZero() && i.Status.Phase == v1.PhaseRunning {
		it.running = now
		if i.Status.StartedAt != nil {
			it.startedAt = *i.Status.StartedAt
		}
		a.nRunning++
		if a.nRunning == a.want {
			close(a.allRunning)
		}
	}
}

// snapshot copies an App's instance times.
func (t *tracker) snapshot(app string) []instTimes {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []instTimes
	for _, it := range t.apps[app].insts {
		out = append(out, *it)
	}
	return out
}

// wait blocks until ch closes, the watch fails, ctx ends or timeout.
func (t *tracker) wait(ctx context.Context, ch <-chan struct{}, timeout time.Duration, what string) error {
	select {
	case <-ch:
		return nil
	case <-t.failed:
		return t.err
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(timeout):
		return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
	}
}
