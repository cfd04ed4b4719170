package notify

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/informer"
	"github.com/gantry-dev/gantry/internal/store"
)

// deployReasons maps the rollout controller's event reasons to deploy
// notification statuses. A deploy's start has no event: it is seen on the
// App itself (appChanged).
var deployReasons = map[string]string{
	"RolloutComplete":          StatusSucceeded,
	"ProgressDeadlineExceeded": StatusFailed,
	"RolledBack":               StatusRolledBack,
}

const seenEvents = 4096

// ObserveEvent turns a deploy event into a notification to the
// namespace's notifiers that want deploys. Register it with the server's
// events.Recorder (Listen) for events recorded in this process; Run also
// watches Event objects for those recorded elsewhere. An event seen both
// ways is sent once. It never blocks.
func (m *Manager) ObserveEvent(e *v1.Event) {
	status, ok := deployReasons[e.Reason]
	// Only the rollout controller's events about an App are deploys:
	// agents report events too (about their instances, under
	// "agent/NODE"), and one of theirs with a deploy reason must not
	// reach chat as the controller's word.
	if !ok || e.Object.Kind != "App" || strings.HasPrefix(e.Source, "agent/") || !m.firstSight(e.Metadata.Namespace+"/"+e.Metadata.Name) {
		return
	}
	m.init()
	app := e.Object.Name
	msg := Message{Kind: KindDeploy, Status: status, App: app, Message: e.Message, Time: e.Time, Severity: "info"}
	if status != StatusSucceeded {
		msg.Severity = "warning"
	}
	// The revision the event is about: by the time it is observed the
	// App may be on another (an automatic rollback writes its revision
	// before the failure's event is recorded).
	if rev, err := strconv.ParseInt(e.Metadata.Labels[v1.LabelRevision], 10, 64); err == nil && rev > 0 {
		msg.Revision = rev
	} else if a, ok := m.apps.Get(e.Metadata.Namespace, app); ok {
		msg.Revision = a.Status.Revision
	}
	m.Send(context.Background(), e.Metadata.Namespace, nil, msg)
}

// firstSight records key and reports whether it is new; it remembers
// the last few thousand keys.
func (m *Manager) firstSight(key string) bool {
	m.seenMu.Lock()
	defer m.seenMu.Unlock()
	if m.seen == nil {
		m.seen = map[string]struct{}{}
	}
	if _, ok := m.seen[key]; ok {
		return false
	}
	m.seen[key] = struct{}{}
	m.seenLog = append(m.seenLog, key)
	if len(m.seenLog) > seenEvents {
		delete(m.seen, m.seenLog[0])
		m.seenLog = m.seenLog[1:]
	}
	return true
}

// appChanged notices a deploy starting: the App's current revision moves
// to one that has not completed a rollout yet. The initial list of the
// informer is not news, and an automatic rollback (which also makes a new
// revision, written stable and with its RolledBack record in one
// transaction) is announced by its own event.
func (m *Manager) appChanged(old, cur *v1.App, deleted bool) {
	select {
	case <-m.apps.Synced():
	default:
		return
	}
	if deleted || cur.Metadata.Deleting != nil {
		return
	}
	st := cur.Status
	var prev int64
	if old != nil {
		prev = old.Status.Revision
		if st.RolledBack != nil && (old.Status.RolledBack == nil || !old.Status.RolledBack.Time.Equal(st.RolledBack.Time)) {
			return
		}
	}
	if st.Revision == 0 || st.Revision == prev || st.Revision == st.StableRevision {
		return
	}
	msg := Message{
		Kind: KindDeploy, Status: StatusStarted, App: cur.Metadata.Name, Revision: st.Revision, Severity: "info",
		Message: fmt.Sprintf("rolling out revision %d of %s (image %s)", st.Revision, cur.Metadata.Name, cur.Spec.Image),
	}
	if st.RolloutStarted != nil {
		msg.Time = *st.RolloutStarted
	}
	m.Send(context.Background(), cur.Metadata.Namespace, nil, msg)
}

// watchEvents follows new Event objects for deploy events recorded by
// other processes (another server's controllers). It starts at the
// present: events from before Run are history, not news.
func (m *Manager) watchEvents(ctx context.Context) {
	k := store.KindFor[*v1.Event]()
	var from int64
	for ctx.Err() == nil {
		if from == 0 {
			rev, err := m.Store.Revision(ctx)
			if err != nil {
				informer.Sleep(ctx, time.Second)
				continue
			}
			from = rev + 1
		}
		for ev := range m.Store.Watch(ctx, k, store.WatchOptions{Revision: from, ProgressNotify: true}) {
			if ev.Type == store.Error {
				if errors.Is(ev.Err, v1.ErrResyncRequired) {
					from = 0
				}
				break
			}
			from = ev.Revision + 1
			if ev.Type == store.Added {
				m.ObserveEvent(ev.Object.(*v1.Event))
			}
		}
		informer.Sleep(ctx, 100*time.Millisecond)
	}
}
