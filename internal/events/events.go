// Package events records Events: short-lived objects that say what
// happened to an App, Instance or Node and why (scheduled, pulled,
// started, unhealthy, rolled back, …).
//
// Recording never blocks the caller: events are queued and written by a
// background goroutine, and dropped (with a log line) if the queue is full,
// because losing an event is better than stalling a controller.
package events

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
)

// TTL is how long events are kept.
const TTL = time.Hour

// Recorder writes events to the store.
type Recorder struct {
	store  *store.Store
	source string
	log    *slog.Logger
	queue  chan *v1.Event
	// Listeners see every event recorded through this recorder (used by
	// notifiers); they must not block.
	listeners []func(*v1.Event)
}

// NewRecorder returns a recorder whose events name source as their origin
// ("scheduler", "agent/node-1"). Run must be running for events to be
// written.
func NewRecorder(s *store.Store, source string, log *slog.Logger) *Recorder {
	return &Recorder{store: s, source: source, log: log, queue: make(chan *v1.Event, 1024)}
}

// Run writes queued events until ctx ends.
func (r *Recorder) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-r.queue:
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := r.store.CreateExpiring(wctx, e, TTL); err != nil {
				r.log.Debug("record event", "reason", e.Reason, "err", err)
			}
			cancel()
		}
	}
}

// Eventf records an event about obj.
func (r *Recorder) Eventf(ctx context.Context, obj v1.Object, eventType, reason, format string, args ...any) {
	m := obj.GetMeta()
	ns := m.Namespace
	if ns == "" {
		ns = v1.DefaultNamespace
	}
	var b [4]byte
	rand.Read(b[:])
	now := time.Now().UTC()
	e := &v1.Event{
		TypeMeta: v1.TypeMeta{Kind: "Event", APIVersion: v1.Version},
		Metadata: v1.ObjectMeta{
			Name:      fmt.Sprintf("%s.%x.%s", m.Name, now.UnixMilli(), hex.EncodeToString(b[:])),
			Namespace: ns,
			Labels:    map[string]string{},
		},
		Type:    eventType,
		Reason:  reason,
		Message: fmt.Sprintf(format, args...),
		Object:  v1.ObjectRef{Kind: obj.GetType().Kind, Name: m.Name},
		Source:  r.source,
		Count:   1,
		Time:    now,
	}
	if app := m.Labels[v1.LabelApp]; app != "" {
		e.Metadata.Labels[v1.LabelApp] = app
	} else if obj.GetType().Kind == "App" {
		e.Metadata.Labels[v1.LabelApp] = m.Name
	}
	if len(e.Metadata.Name) > 253 {
		e.Metadata.Name = e.Metadata.Name[len(e.Metadata.Name)-253:]
	}
	for _, l := range r.listeners {
		l(e)
	}
	select {
	case r.queue <- e:
	default:
		r.log.Warn("event queue full; dropping event", "reason", reason, "object", m.Key())
	}
}

// Listen registers fn to see every event this recorder records.
// It must be called before Run.
func (r *Recorder) Listen(fn func(*v1.Event)) { r.listeners = append(r.listeners, fn) }
