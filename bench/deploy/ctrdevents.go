package main

import (
	"context"
	"sync"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	ctrd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/typeurl/v2"

	"github.com/gantry-dev/gantry/internal/runtime"
)

// ctrTimes is when containerd published each step of one container's
// creation: its writable snapshot prepared, the container record stored,
// the task created (shim started, runc create done) and started (runc
// start done).
type ctrTimes struct {
	snapshot, container, taskCreate, taskStart time.Time
}

// ctrEvents records containerd's own event timestamps for every
// container of the Gantry namespace. They split the agent's part of a
// deploy without touching the agent: everything before the snapshot is
// Gantry's preparation (network, files, checks), everything between the
// container record and the task start is containerd, runc and the shim
// (plus whatever the agent waits for in between).
type ctrEvents struct {
	mu sync.Mutex
	by map[string]*ctrTimes
}

func startCtrEvents(ctx context.Context, socket string) (*ctrEvents, func(), error) {
	cl, err := ctrd.New(socket, ctrd.WithDefaultNamespace(runtime.DefaultNamespace))
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	e := &ctrEvents{by: map[string]*ctrTimes{}}
	evs, errs := cl.Subscribe(ctx, `namespace=="`+runtime.DefaultNamespace+`"`)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-errs:
				return
			case env := <-evs:
				if env == nil {
					return
				}
				v, err := typeurl.UnmarshalAny(env.Event)
				if err != nil {
					continue
				}
				e.record(v, env.Timestamp)
			}
		}
	}()
	return e, func() { cancel(); cl.Close() }, nil
}

func (e *ctrEvents) record(v any, at time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	get := func(id string) *ctrTimes {
		t := e.by[id]
		if t == nil {
			t = &ctrTimes{}
			e.by[id] = t
		}
		return t
	}
	switch x := v.(type) {
	case *apievents.SnapshotPrepare:
		// Gantry and the floor both key a container's snapshot by the
		// container ID.
		if t := get(x.Key); t.snapshot.IsZero() {
			t.snapshot = at
		}
	case *apievents.ContainerCreate:
		if t := get(x.ID); t.container.IsZero() {
			t.container = at
		}
	case *apievents.TaskCreate:
		if t := get(x.ContainerID); t.taskCreate.IsZero() {
			t.taskCreate = at
		}
	case *apievents.TaskStart:
		if t := get(x.ContainerID); t.taskStart.IsZero() {
			t.taskStart = at
		}
	}
}

// get returns the times of a container, waiting up to a second for the
// task-start event, which can arrive after the caller saw the start.
func (e *ctrEvents) get(id string) ctrTimes {
	deadline := time.Now().Add(time.Second)
	for {
		e.mu.Lock()
		t, ok := e.by[id]
		var c ctrTimes
		if ok {
			c = *t
		}
		e.mu.Unlock()
		if !c.taskStart.IsZero() || time.Now().After(deadline) {
			return c
		}
		time.Sleep(10 * time.Millisecond)
	}
}
