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
	"strconv"
	"strings"
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
	app := m.Labels[v1.LabelApp]
	if app == "" && obj.GetType().Kind == "App" {
		app = m.Name
	}
	var rev int64
	if a, ok := obj.(*v1.App); ok {
		rev = a.Status.Revision
	}
	r.record(m.Namespace, v1.ObjectRef{Kind: obj.GetType().Kind, Name: m.Name}, app, rev, eventType, reason, fmt.Sprintf(format, args...))
}

// Record records an event about something that is not a stored object
// (an image in the registry, say).
func (r *Recorder) Record(ctx context.Context, ns string, ref v1.ObjectRef, eventType, reason, message string) {
	r.record(ns, ref, "", 0, eventType, reason, message)
}

// record records an event; app and revision, when set, become the
// event's gantry.dev/app and gantry.dev/revision labels (an App's event
// names the revision it is about, which may no longer be the App's
// current one when the event is read: a deploy notification needs it).
func (r *Recorder) record(ns string, ref v1.ObjectRef, app string, revision int64, eventType, reason, message string) {
	if ns == "" {
		ns = v1.DefaultNamespace
	}
	var b [4]byte
	rand.Read(b[:])
	now := time.Now().UTC()
	e := &v1.Event{
		TypeMeta: v1.TypeMeta{Kind: "Event", APIVersion: v1.Version},
		Metadata: v1.ObjectMeta{
			Name:      fmt.Sprintf("%s.%x.%s", sanitizeName(ref.Name), now.UnixMilli(), hex.EncodeToString(b[:])),
			Namespace: ns,
		},
		Type:    eventType,
		Reason:  reason,
		Message: message,
		Object:  ref,
		Source:  r.source,
		Count:   1,
		Time:    now,
	}
	if app != "" {
		e.Metadata.Labels = map[string]string{v1.LabelApp: app}
		if revision > 0 {
			e.Metadata.Labels[v1.LabelRevision] = strconv.FormatInt(revision, 10)
		}
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
		r.log.Warn("event queue full; dropping event", "reason", reason, "object", ref.Kind+"/"+ref.Name)
	}
}

// Listen registers fn to see every event this recorder records.
// It must be called before Run.
func (r *Recorder) Listen(fn func(*v1.Event)) { r.listeners = append(r.listeners, fn) }

// sanitizeName makes a string usable in an event name.
func sanitizeName(s string) string {
	b := []byte(strings.ToLower(s))
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '.':
		default:
			b[i] = '-'
		}
	}
	return string(b)
}
