package controller

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/apps"
	"github.com/gantry-dev/gantry/internal/informer"
	"github.com/gantry-dev/gantry/internal/store"
)

// Recorder records events about objects.
type Recorder interface {
	Eventf(ctx context.Context, obj v1.Object, eventType, reason, format string, args ...any)
}

// LabelTemplateHash marks which template (and pinned image) an instance
// runs. Instances whose hash equals the current revision's are up to date
// even if they were made for an older revision number — which is what
// makes a rollback to a still-running revision instant.
const LabelTemplateHash = apps.LabelTemplateHash

// Rollout makes each App have the right number of instances of its
// current revision, replacing old ones in a rolling fashion that never
// drops below the available count the strategy allows, and rolls back a
// rollout that stops making progress.
type Rollout struct {
	store *store.Store
	rec   Recorder
	log   *slog.Logger
	now   func() time.Time

	Apps      *informer.Informer[*v1.App]
	Instances *informer.Informer[*v1.Instance]
	// Nodes, when set, tells which nodes are down: an instance on a
	// node that is not ready (or, once the informer has synced, is not
	// registered) counts as not ready, whatever its last status says,
	// as its agent cannot say otherwise and discovery gives it no
	// traffic. Set it before Run, which runs it.
	Nodes *informer.Informer[*v1.Node]
	// Metrics may be nil.
	Metrics *RolloutMetrics
	// Admit checks the App an automatic rollback would make (prev is
	// the App before) against today's policy and quota; a refusal
	// marks the App Failed instead. Nil admits every rollback.
	Admit func(ctx context.Context, a, prev *v1.App) error
	// HoldQuota, when set, serializes an automatic rollback's quota check
	// and write with the other writes a namespace quota counts.
	HoldQuota func(ctx context.Context, namespace string) (release func())
	// HoldClaims, when set, serializes an automatic rollback's check of
	// routes and node ports (which the old template may bring back) and
	// its write with the API server's writes of Apps. Taken after
	// HoldQuota, in the API server's order.
	HoldClaims func() (release func())
	queue      *Queue

	// spells remembers, by instance UID, when this controller saw the
	// current spell of an instance's readiness begin, on its own clock:
	// minReady is then measured on one clock, whatever the node's says.
	spellMu sync.Mutex
	spells  map[string]spell

	revMu sync.Mutex
	// revs caches revisions, which never change, by App UID and number:
	// an App deleted and created again under its name starts afresh even
	// if the watch never showed the delete.
	revs map[string]map[int64]*v1.Revision
}

// NewRollout returns the rollout controller. The informers may be shared
// with other components; pass nil to make private ones.
func NewRollout(s *store.Store, rec Recorder, log *slog.Logger, instances *informer.Informer[*v1.Instance], apps *informer.Informer[*v1.App]) *Rollout {
	if instances == nil {
		instances = informer.New[*v1.Instance](s, log)
	}
	if apps == nil {
		apps = informer.New[*v1.App](s, log)
	}
	r := &Rollout{
		store: s, rec: rec, log: log.With("controller", "rollout"), now: time.Now,
		Apps: apps, Instances: instances,
		queue: NewQueue(), revs: map[string]map[int64]*v1.Revision{}, spells: map[string]spell{},
	}
	r.Apps.OnChange(func(old, a *v1.App, deleted bool) {
		switch {
		case deleted:
			r.forgetRevisions(a.Metadata.UID)
		case old != nil && old.Metadata.UID != a.Metadata.UID:
			r.forgetRevisions(old.Metadata.UID)
		case old != nil && (a.Status.Revision != old.Status.Revision || a.Spec.HistoryLimit() < old.Spec.HistoryLimit()):
			r.trimRevisions(a)
		}
		// An automatic rollback is announced by its own RolledBack
		// event, and starts with phase RolledBack. A paused App rolls
		// nothing out until it is resumed, and is announced then.
		if !deleted && old != nil && !a.Spec.Paused {
			switch {
			case a.Status.Revision > old.Status.Revision && a.Status.Phase == v1.AppProgressing:
				r.announce(a, "rolling out")
			case old.Spec.Paused && a.Status.Phase == v1.AppPaused && a.Status.Revision != a.Status.StableRevision:
				r.announce(a, "resuming the rollout of")
			}
		}
		r.queue.Add(a.Metadata.Key())
	})
	r.Instances.OnChange(func(old, i *v1.Instance, deleted bool) {
		r.noteSpell(old, i, deleted)
		r.queue.Add(i.Metadata.Namespace + "/" + i.Spec.App)
	})
	return r
}

// announce records the RolloutStarted event of a's current revision,
// saying why the revision was made (an undo, a restart, the cause an
// apply gave), as `gantry rollout history` does.
func (r *Rollout) announce(a *v1.App, what string) {
	why := "template changed"
	// Handlers run in the informer's watch loop: the read, whose
	// revision the next pass needs anyway, is kept short.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rev, err := r.revision(ctx, a, a.Status.Revision)
	switch {
	case err != nil:
		r.log.Debug("read the revision to announce", "app", a.Metadata.Key(), "revision", a.Status.Revision, "err", err)
	case rev.Spec.ChangeCause != "":
		why = rev.Spec.ChangeCause
	}
	r.rec.Eventf(context.Background(), a, v1.EventNormal, "RolloutStarted", "%s revision %d (%s)", what, a.Status.Revision, why)
}

// Run starts the informers (shared ones run once) and the workers; it
// returns when ctx ends.
func (r *Rollout) Run(ctx context.Context, workers int) {
	go r.Apps.Run(ctx)
	go r.Instances.Run(ctx)
	if r.Nodes != nil {
		// A node that stops (or starts again) answering changes what
		// its instances count for.
		r.Nodes.OnChange(func(old, n *v1.Node, deleted bool) {
			if old != nil && !deleted && old.Status.Ready == n.Status.Ready {
				return
			}
			for _, i := range r.Instances.List(func(i *v1.Instance) bool { return i.Spec.Node == n.Metadata.Name }) {
				r.queue.Add(i.Metadata.Namespace + "/" + i.Spec.App)
			}
		})
		go r.Nodes.Run(ctx)
	}
	select {
	case <-ctx.Done():
		return
	case <-r.Apps.Synced():
	}
	select {
	case <-ctx.Done():
		return
	case <-r.Instances.Synced():
	}
	// Apps with no instances left also need a pass (deleted apps whose
	// instances were all already gone are simply skipped).
	for _, a := range r.Apps.List(nil) {
		r.queue.Add(a.Metadata.Key())
	}
	r.queue.RunWorkers(ctx, workers, r.sync)
}

func (r *Rollout) sync(ctx context.Context, key string) {
	requeue, err := r.reconcile(ctx, key)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("reconcile app", "app", key, "err", err)
		}
		if requeue == 0 || requeue > time.Second {
			requeue = time.Second
		}
	}
	if requeue > 0 {
		r.queue.AddAfter(key, requeue)
	}
}

// revision returns revision n of a.
func (r *Rollout) revision(ctx context.Context, a *v1.App, n int64) (*v1.Revision, error) {
	uid := a.Metadata.UID
	r.revMu.Lock()
	rev, ok := r.revs[uid][n]
	r.revMu.Unlock()
	if ok {
		return rev, nil
	}
	rev, err := store.Get[*v1.Revision](ctx, r.store, a.Metadata.Namespace, v1.RevisionName(a.Metadata.Name, n))
	if err != nil {
		return nil, err
	}
	r.revMu.Lock()
	if r.revs[uid] == nil {
		r.revs[uid] = map[int64]*v1.Revision{}
	}
	r.revs[uid][n] = rev
	r.revMu.Unlock()
	return rev, nil
}

// forgetRevisions drops the cached revisions of the App with this UID.
func (r *Rollout) forgetRevisions(uid string) {
	r.revMu.Lock()
	defer r.revMu.Unlock()
	delete(r.revs, uid)
}

// trimRevisions drops the cached revisions of a that its history no
// longer keeps, so that an App deployed for months does not grow the
// cache by every revision it ever ran. (One still needed, for an old
// instance, is read again.)
func (r *Rollout) trimRevisions(a *v1.App) {
	r.revMu.Lock()
	defer r.revMu.Unlock()
	oldest := a.Status.Revision - int64(a.Spec.HistoryLimit())
	for n := range r.revs[a.Metadata.UID] {
		if n < oldest && n != a.Status.StableRevision {
			delete(r.revs[a.Metadata.UID], n)
		}
	}
}

// TemplateHash identifies what an instance of rev runs: template and
// pinned image.
func TemplateHash(rev *v1.Revision) string {
	return apps.InstanceHash(apps.StatusHash(rev.Spec.Hash, rev.Spec.Image, rev.Spec.ImageDigest))
}

// reconcile brings one App's instances toward its spec. It returns when
// to look again even if nothing changes (for the progress deadline).
func (r *Rollout) reconcile(ctx context.Context, key string) (time.Duration, error) {
	ns, name, _ := strings.Cut(key, "/")
	insts := r.withNodeReadiness(r.Instances.List(func(i *v1.Instance) bool { return i.Metadata.Namespace == ns && i.Spec.App == name }))
	app, ok := r.Apps.Get(ns, name)
	if !ok || app.Metadata.Deleting != nil {
		// The App is gone: drain and stop everything it had, each
		// instance for the drain delay it was created with.
		for _, i := range insts {
			if i.Metadata.Deleting == nil {
				if err := r.retire(ctx, i, i.Spec.DrainDelay, "app deleted"); err != nil {
					return 0, err
				}
			}
		}
		return 0, nil
	}
	rev, err := r.revision(ctx, app, app.Status.Revision)
	if err != nil {
		return 0, fmt.Errorf("read revision %d: %w", app.Status.Revision, err)
	}
	hash := TemplateHash(rev)
	var cur, old []*v1.Instance
	for _, i := range insts {
		switch {
		case i.Metadata.Deleting != nil:
		case i.ForeignTo(app):
			// Left by a deleted App of the same name (still draining,
			// or on a node that was down): stopped as that App's
			// delete would have, and never counted for this one.
			if err := r.retire(ctx, i, i.Spec.DrainDelay, "made for a deleted app of the same name"); err != nil {
				return 0, err
			}
		case i.Metadata.Labels[LabelTemplateHash] == hash:
			cur = append(cur, i)
		default:
			old = append(old, i)
		}
	}
	desired := int(app.DesiredReplicas())
	st := app.Spec.Strategy
	surge, unavail := 1, 0
	if st.MaxSurge != nil {
		surge = st.MaxSurge.Resolve(desired, true)
	}
	if st.MaxUnavailable != nil {
		unavail = st.MaxUnavailable.Resolve(desired, false)
	}
	if surge == 0 && unavail == 0 {
		unavail = 1
	}
	drain := st.Drain()
	av := r.newAvailability(st.MinReady.D())
	av.done = app.Spec.Template.RestartPolicy != v1.RestartAlways
	newReady, oldReady := countReady(cur), countReady(old)

	// 0. Network policy and the drain delay are not part of the
	// template: carry a change of spec.network.allowFrom to the running
	// instances, whose agents update the packet filter, and one of
	// strategy.drainDelay, which they drain for if the App is deleted.
	var allow []string
	if a := app.Spec.Network; a != nil {
		allow = a.AllowFrom
	}
	for _, i := range append(append([]*v1.Instance(nil), cur...), old...) {
		if slices.Equal(i.Spec.AllowFrom, allow) && i.Spec.DrainDelay == drain {
			continue
		}
		out, err := store.Mutate(ctx, r.store, i.Metadata.Namespace, i.Metadata.Name, func(x *v1.Instance) error {
			if x.Metadata.Deleting != nil || slices.Equal(x.Spec.AllowFrom, allow) && x.Spec.DrainDelay == drain {
				// A retired instance drains for the delay it was
				// retired with.
				return store.ErrUnchanged
			}
			x.Spec.AllowFrom = slices.Clone(allow)
			x.Spec.DrainDelay = drain
			return nil
		})
		if err != nil && !errors.Is(err, v1.ErrNotFound) {
			return 0, err
		}
		if err == nil {
			r.Instances.Observe(out)
		}
	}

	// 1. Add instances of the current template, within the surge.
	if !app.Spec.Paused || len(old) == 0 {
		want := desired - len(cur)
		if !app.Spec.Paused {
			room := desired + surge - len(cur) - len(old)
			want = min(want, room)
		}
		// A few at a time: the next pass, which the new instances
		// queue, reads the App again, so a scale-down (or a fix)
		// applied while thousands are being made takes effect at once.
		want = min(want, createsPerPass)
		for k := 0; k < want; k++ {
			i, err := r.createInstance(ctx, app, rev, hash)
			if err != nil {
				return 0, err
			}
			cur = append(cur, i)
		}
	}

	// 1b. Scaling a paused rollout resizes its old side; the new
	// instances stay as many as the pause found (fewer if the App was
	// scaled below that, in step 3). Shrinking keeps to the strategy's
	// availability, so pausing mid-rollout never takes ready instances
	// away for surge instances that are not ready.
	if app.Spec.Paused && len(old) > 0 {
		want := max(0, desired-len(cur))
		switch {
		case len(old) > want:
			old, err = r.retireOld(ctx, av, cur, old, want, desired-unavail, drain, fmt.Sprintf("scaled down while paused, %d old instances wanted", want))
		case len(old) < want && app.Status.StableRevision == app.Status.Revision:
			// A rollback, paused: the current template is the one
			// that works and the old side is what failed, so the
			// current side grows instead.
			for made := 0; len(cur)+len(old) < desired && made < createsPerPass && err == nil; made++ {
				var i *v1.Instance
				if i, err = r.createInstance(ctx, app, rev, hash); err == nil {
					cur = append(cur, i)
				}
			}
		case len(old) < want:
			old, err = r.growPaused(ctx, app, old, want)
		}
		if err != nil {
			return 0, err
		}
		oldReady = countReady(old)
	}

	// 2. Retire old instances as far as the strategy allows.
	if !app.Spec.Paused && len(old) > 0 {
		old, err = r.retireOld(ctx, av, cur, old, 0, desired-unavail, drain, fmt.Sprintf("replaced by revision %d", rev.Spec.Number))
		if err != nil {
			return 0, err
		}
		oldReady = countReady(old)
	}

	// 3. Scale down extra current instances: unready first, then newest.
	if excess := len(cur) - desired; excess > 0 {
		sortRetireFirst(cur)
		for _, i := range cur[:excess] {
			if err := r.retire(ctx, i, drain, fmt.Sprintf("scaled down to %d", desired)); err != nil {
				return 0, err
			}
		}
		cur = cur[excess:]
		newReady = countReady(cur)
	}
	requeue, err := r.updateStatus(ctx, app, rev, av, cur, old, newReady, oldReady, desired)
	if next := av.next; next > 0 && (requeue == 0 || next < requeue) {
		// An instance becomes available then, and nothing else would
		// wake this App's pass.
		requeue = next
	}
	return requeue, err
}

// withNodeReadiness replaces, in l, each ready instance whose node is down
// with a copy that is not ready (see Rollout.Nodes). The copies are only
// read: every write of an instance reads it again.
func (r *Rollout) withNodeReadiness(l []*v1.Instance) []*v1.Instance {
	if r.Nodes == nil {
		return l
	}
	synced := false
	select {
	case <-r.Nodes.Synced():
		synced = true
	default:
	}
	for k, i := range l {
		if !i.Status.Ready || i.Spec.Node == "" {
			continue
		}
		n, known := r.Nodes.Get("", i.Spec.Node)
		if known && n.Status.Ready || !known && !synced {
			continue
		}
		c := *i
		c.Status.Ready = false
		c.Status.Message = "node " + i.Spec.Node + " is not ready"
		l[k] = &c
	}
	return l
}

// spell is a spell of readiness: since is its start as the node's agent
// reported it, seen when this controller heard of it.
type spell struct {
	since, seen time.Time
}

// noteSpell records when a spell of readiness was first heard of. Only
// a change seen as it happens counts: an instance already ready when the
// controller started (old is nil) goes by its agent's clock.
func (r *Rollout) noteSpell(old, i *v1.Instance, deleted bool) {
	r.spellMu.Lock()
	defer r.spellMu.Unlock()
	switch since := i.Status.ReadySince; {
	case deleted:
		delete(r.spells, i.Metadata.UID)
	case !i.Status.Ready || since == nil:
	case old == nil || old.Status.ReadySince == nil || !old.Status.ReadySince.Equal(*since):
		if old != nil {
			r.spells[i.Metadata.UID] = spell{since: *since, seen: r.now()}
		}
	}
}

// readySince is when i's current spell of readiness began, on this
// controller's clock where it saw it begin, else on the node's (but not
// in the future).
func (r *Rollout) readySince(i *v1.Instance, now time.Time) time.Time {
	since := *i.Status.ReadySince
	r.spellMu.Lock()
	sp, ok := r.spells[i.Metadata.UID]
	r.spellMu.Unlock()
	if ok && sp.since.Equal(since) {
		return sp.seen
	}
	if since.After(now) {
		return now
	}
	return since
}

// availability tells available instances, those ready for the
// strategy's minReady, from those merely ready, and notes when the
// first of the latter becomes available.
type availability struct {
	minReady time.Duration
	// done: an instance that has done its work (Succeeded) counts as
	// available, as for an App whose restart policy is not always.
	done bool
	now  time.Time
	// since is when an instance's spell of readiness began.
	since func(i *v1.Instance, now time.Time) time.Time
	// next is how long until the soonest ready instance asked about
	// becomes available; 0 if none is waiting.
	next time.Duration
}

func (r *Rollout) newAvailability(minReady time.Duration) *availability {
	return &availability{minReady: minReady, now: r.now(), since: r.readySince}
}

// available reports whether i has been ready, without a break, for
// minReady. A ready instance whose start of readiness is unknown is not
// (its agent reports one with its next status).
func (av *availability) available(i *v1.Instance) bool {
	if av.done && i.Status.Phase == v1.PhaseSucceeded {
		return true
	}
	if !i.Status.Ready {
		return false
	}
	if av.minReady <= 0 {
		return true
	}
	if i.Status.ReadySince == nil {
		return false
	}
	left := av.minReady - av.now.Sub(av.since(i, av.now))
	if left <= 0 {
		return true
	}
	left += 10 * time.Millisecond
	if av.next == 0 || left < av.next {
		av.next = left
	}
	return false
}

func (av *availability) count(l []*v1.Instance) int {
	n := 0
	for _, i := range l {
		if av.available(i) {
			n++
		}
	}
	return n
}

// retireOld retires instances of old, the best to remove first, until
// keep remain, within the strategy: an available one only while
// minAvailable instances stay available, a running one that is not
// available (not ready, or not ready for minReady yet) only while the
// instances left would cover minAvailable once the new ones are
// available (the bound Kubernetes puts on removing unhealthy old pods),
// so a readiness blip on the old side does not wipe it out. Instances
// whose container is not running go first and freely. It returns the
// old instances that remain.
func (r *Rollout) retireOld(ctx context.Context, av *availability, cur, old []*v1.Instance, keep, minAvailable int, drain v1.Duration, why string) ([]*v1.Instance, error) {
	newAvailable := av.count(cur)
	available := newAvailable
	for _, i := range old {
		if !i.Status.Finished() && av.available(i) {
			available++
		}
	}
	// The budget counts the old instances that would be left serving or
	// about to: unplaced ones and ones whose container is not running go
	// freely, and must not make room for removing a running one.
	running := 0
	for _, i := range old {
		if i.Spec.Node != "" && i.Status.Phase == v1.PhaseRunning {
			running++
		}
	}
	unreadyBudget := running + newAvailable - minAvailable
	removable := len(old) - keep
	sortRetireFirst(old)
	kept := make([]*v1.Instance, 0, len(old))
	for _, i := range old {
		ok := removable > 0
		switch {
		case !ok:
		case i.Status.Finished():
			// Its work is done (a batch App's): it serves nothing.
		case av.available(i):
			if ok = available-1 >= minAvailable; ok {
				available--
			}
		case i.Spec.Node == "" || i.Status.Phase != v1.PhaseRunning:
			// Not placed, or its container is not running (in
			// back-off, say): it serves nothing and may hold the
			// capacity the new instances need.
		default:
			if ok = unreadyBudget > 0; ok {
				unreadyBudget--
			}
		}
		if !ok {
			kept = append(kept, i)
			continue
		}
		if err := r.retire(ctx, i, drain, why); err != nil {
			return nil, err
		}
		removable--
	}
	return kept, nil
}

// growPaused adds instances to the old side of a paused rollout until it
// has want. They run what the ready old instances run: the last working
// revision's template if one of them has it, else the newest revision
// among them. With no ready old instance there is nothing known to work
// to add; the rollout, once resumed, brings the count to the spec.
func (r *Rollout) growPaused(ctx context.Context, app *v1.App, old []*v1.Instance, want int) ([]*v1.Instance, error) {
	stableHash := ""
	if n := app.Status.StableRevision; n != 0 {
		if rev, err := r.revision(ctx, app, n); err == nil {
			stableHash = TemplateHash(rev)
		} else if !errors.Is(err, v1.ErrNotFound) {
			return nil, fmt.Errorf("read revision %d: %w", n, err)
		}
	}
	var n int64
	for _, i := range old {
		if !i.Status.Ready {
			continue
		}
		if stableHash != "" && i.Metadata.Labels[LabelTemplateHash] == stableHash {
			n = i.Spec.Revision
			break
		}
		n = max(n, i.Spec.Revision)
	}
	if n == 0 {
		r.log.Debug("not scaling the old side of a paused rollout up: none of its instances is ready", "app", app.Metadata.Key())
		return old, nil
	}
	rev, err := r.revision(ctx, app, n)
	if errors.Is(err, v1.ErrNotFound) {
		// Pruned from the history: nothing to add old instances from.
		r.log.Warn("cannot scale the old side of a paused rollout up: its revision is gone", "app", app.Metadata.Key(), "revision", n)
		return old, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read revision %d: %w", n, err)
	}
	hash := TemplateHash(rev)
	for made := 0; len(old) < want && made < createsPerPass; made++ {
		i, err := r.createInstance(ctx, app, rev, hash)
		if err != nil {
			return nil, err
		}
		old = append(old, i)
	}
	return old, nil
}

// createsPerPass is the most instances one pass for an App creates; the
// instances it made queue the next pass.
const createsPerPass = 32

func countReady(l []*v1.Instance) int {
	n := 0
	for _, i := range l {
		if i.Status.Ready {
			n++
		}
	}
	return n
}

// sortRetireFirst orders instances so that the best ones to remove come
// first: not ready, then not running, then the newest.
func sortRetireFirst(l []*v1.Instance) {
	rank := func(i *v1.Instance) int {
		switch {
		case i.Spec.Node == "":
			return 0
		case !i.Status.Ready && i.Status.Phase != v1.PhaseRunning:
			return 1
		case !i.Status.Ready:
			return 2
		}
		return 3
	}
	sort.SliceStable(l, func(a, b int) bool {
		ra, rb := rank(l[a]), rank(l[b])
		if ra != rb {
			return ra < rb
		}
		return l[a].Metadata.Created.After(l[b].Metadata.Created)
	})
}

const nameAlphabet = "bcdfghjklmnpqrstvwxz2456789"

func randomSuffix(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = nameAlphabet[int(b[i])%len(nameAlphabet)]
	}
	return string(b)
}

func (r *Rollout) createInstance(ctx context.Context, a *v1.App, rev *v1.Revision, hash string) (*v1.Instance, error) {
	image := rev.Spec.Image
	if image == "" {
		image = rev.Spec.Template.Image
	}
	if rev.Spec.ImageDigest != "" && !strings.Contains(image, "@") {
		image = stripTag(image) + "@" + rev.Spec.ImageDigest
	}
	var allow []string
	if a.Spec.Network != nil {
		allow = a.Spec.Network.AllowFrom
	}
	for attempt := 0; ; attempt++ {
		i := &v1.Instance{
			TypeMeta: v1.TypeMeta{Kind: "Instance", APIVersion: v1.Version},
			Metadata: v1.ObjectMeta{
				Name:      a.Metadata.Name + "-" + randomSuffix(5),
				Namespace: a.Metadata.Namespace,
				Labels: map[string]string{
					v1.LabelApp:       a.Metadata.Name,
					v1.LabelAppUID:    a.Metadata.UID,
					v1.LabelRevision:  fmt.Sprint(rev.Spec.Number),
					LabelTemplateHash: hash,
				},
			},
			Spec: v1.InstanceSpec{App: a.Metadata.Name, Revision: rev.Spec.Number, Template: rev.Spec.Template, Image: image, AllowFrom: allow,
				// Kept for the day the App is deleted: its instances
				// then drain as long as its rollouts would have.
				DrainDelay: a.Spec.Strategy.Drain()},
			Status: v1.InstanceStatus{Phase: v1.PhasePending, Reason: "Scheduling", Message: "waiting for the scheduler"},
		}
		err := r.store.Create(ctx, i)
		if errors.Is(err, v1.ErrAlreadyExists) && attempt < 3 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("create instance of %s: %w", a.Metadata.Key(), err)
		}
		r.Instances.Observe(i)
		return i, nil
	}
}

// stripTag removes a :tag from an image reference (keeping a registry
// port).
func stripTag(ref string) string {
	slash := strings.LastIndex(ref, "/")
	if colon := strings.LastIndex(ref, ":"); colon > slash {
		return ref[:colon]
	}
	return ref
}

// retire marks an instance for deletion: the load balancer and DNS drop
// it at once, and its agent drains, stops and removes it. Instances not
// yet on a node are deleted outright.
func (r *Rollout) retire(ctx context.Context, i *v1.Instance, drain v1.Duration, why string) error {
	for i.Spec.Node == "" {
		// Deleted only if still as read: the scheduler may have just
		// placed it, and then it drains like any other.
		_, err := r.store.Delete(ctx, store.KindFor[*v1.Instance](), i.Metadata.Namespace, i.Metadata.Name, i.Metadata.Revision)
		if err == nil || errors.Is(err, v1.ErrNotFound) {
			r.Instances.Forget(i.Metadata.Namespace, i.Metadata.Name)
			return nil
		}
		if !errors.Is(err, v1.ErrConflict) {
			return err
		}
		if i, err = store.Get[*v1.Instance](ctx, r.store, i.Metadata.Namespace, i.Metadata.Name); err != nil {
			if errors.Is(err, v1.ErrNotFound) {
				return nil
			}
			return err
		}
	}
	out, err := store.Mutate(ctx, r.store, i.Metadata.Namespace, i.Metadata.Name, func(i *v1.Instance) error {
		if i.Metadata.Deleting != nil {
			return store.ErrUnchanged
		}
		now := r.now().UTC()
		i.Metadata.Deleting = &now
		i.Spec.DrainDelay = drain
		return nil
	})
	if errors.Is(err, v1.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	r.Instances.Observe(out)
	r.log.Debug("retiring instance", "instance", i.Metadata.Key(), "why", why)
	return nil
}

// updateStatus records what the pass saw and enforces the progress
// deadline.
func (r *Rollout) updateStatus(ctx context.Context, a *v1.App, rev *v1.Revision, av *availability, cur, old []*v1.Instance, newReady, oldReady, desired int) (time.Duration, error) {
	now := r.now().UTC()
	st := a.Status
	// Whether an instance of the revision was ever ready, read before
	// the peaks follow a scale to zero down.
	everReady := a.Status.PeakUpdatedReady > 0
	newAvailable := av.count(cur)
	st.Replicas = int32(len(cur) + len(old))
	st.ReadyReplicas = int32(newReady + oldReady)
	st.AvailableReplicas = int32(newAvailable + av.count(old))
	st.UpdatedAvailable = int32(newAvailable)
	st.UpdatedReplicas = int32(len(cur))
	// Progress is more new instances ready (or available: ready for
	// minReady) than ever in this rollout, not merely more than on the
	// last pass: readiness that comes and goes would otherwise reset the
	// deadline forever. The peaks follow the replicas down, so that a
	// scale-down and up again can progress.
	st.PeakUpdatedReady = min(st.PeakUpdatedReady, int32(desired))
	st.PeakUpdatedAvailable = min(st.PeakUpdatedAvailable, int32(desired))
	// For an App whose work ends (restart policy never or on-failure),
	// an instance that has done it (Succeeded) is as far as one gets:
	// progress as a ready one is.
	// (newAvailable counts them already: av.done.)
	succeeded := 0
	if av.done {
		succeeded = countPhase(cur, v1.PhaseSucceeded)
	}
	doneReady, doneAvailable := newReady+succeeded, newAvailable
	if int32(doneReady) > st.PeakUpdatedReady || int32(doneAvailable) > st.PeakUpdatedAvailable {
		st.Progressed = &now
		st.PeakUpdatedReady = max(st.PeakUpdatedReady, int32(doneReady))
		st.PeakUpdatedAvailable = max(st.PeakUpdatedAvailable, int32(doneAvailable))
		st.Stalled = false
	}
	rolling := st.StableRevision != st.Revision
	if !a.Spec.Paused && a.Status.Phase == v1.AppPaused {
		// Resumed: a pause stops the progress deadline's clock, as in
		// Kubernetes, so it starts again from now.
		st.Progressed = &now
	}
	if desired > 0 && rolling && (a.Status.Phase == v1.AppRunning || a.Status.Phase == v1.AppCompleted) {
		// Scaled up from zero in the middle of a rollout (the case
		// below): the deadline's clock starts now.
		st.Progressed = &now
	}
	st.UpdatedReady = int32(newReady)
	rescaled := st.ObservedReplicas != int32(desired)
	st.ObservedReplicas = int32(desired)
	if rescaled {
		st.Stalled = false // it was about another count
	}
	// Zero instances prove nothing: a revision scaled to zero before
	// any instance of it was ready must neither replace the last good
	// one as the revision rollbacks go back to nor, for a first rollout,
	// become it (a failed first rollout scaled to 0 was later "rolled
	// back" to, and sat RolledBack on a template that never ran).
	complete := len(old) == 0 && len(cur) == desired && doneAvailable == desired && (desired > 0 || !rolling || st.StableRevision == 0 && everReady)
	// A Failed rollout recovers (a Secret created late, a slow pull, a
	// node back) only once its instances have stayed ready for a while:
	// those of a revision that crashes at once can all look ready for a
	// moment, which is no proof that it works.
	var steadyNext time.Duration
	if complete && st.Phase == v1.AppFailed {
		steady := r.newAvailability(max(a.Spec.Strategy.MinReady.D(), failedRecovery))
		steady.done = av.done
		if steady.count(cur) < desired {
			complete, steadyNext = false, steady.next
		}
	}
	idle := desired == 0 && len(old) == 0 && len(cur) == 0 && rolling
	// An App of work that ends (restart policy never or on-failure)
	// whose instances have all done it: finished, not broken. Its
	// instances are never ready again, which would otherwise read as a
	// stall, and a rollout's as no progress, to be rolled back.
	completed := av.done && desired > 0 && len(old) == 0 && len(cur) == desired && succeeded == desired
	complete = complete || completed
	var requeue time.Duration
	switch {
	case completed:
		st.Phase, st.StableRevision = v1.AppCompleted, st.Revision
		st.Message = fmt.Sprintf("all %d instances of revision %d ran to completion", desired, st.Revision)
		st.Stalled = false
	case idle && st.StableRevision > 0:
		// Scaled to zero mid-rollout (often to stop a bad one): done,
		// as far as waiting goes, but revision StableRevision stays
		// the last good one.
		st.Phase = v1.AppRunning
		st.Message = fmt.Sprintf("scaled to 0 before revision %d was ready; revision %d stays the one to roll back to", st.Revision, st.StableRevision)
	case complete:
		st.Phase, st.Message, st.StableRevision = v1.AppRunning, "", st.Revision
		st.Stalled = false
	case idle && st.Phase != v1.AppFailed:
		// Created with 0 replicas, or a first rollout scaled to 0
		// before any instance was ready: nothing to wait for, nor to
		// roll back to. Scaled up, the rollout starts (deadline and
		// all, see above) and completes as any first one. A Failed one
		// stays Failed (below): scaling to 0 is no fix.
		st.Phase = v1.AppRunning
		st.Message = fmt.Sprintf("no instances wanted; revision %d has yet to have a ready instance", st.Revision)
	case st.Phase == v1.AppRolledBack && st.RolledBack != nil && st.RolledBack.Revision == st.Revision:
		// Rolling back: the revision it made is stable by definition
		// (no deadline, nothing earlier to go to), but until it runs
		// everywhere the App says so, and why, paused or not.
		st.Message = fmt.Sprintf("%s; %d of %d instances of revision %d ready", st.RolledBack.Reason, newReady, desired, st.Revision) + blame(cur)
		if a.Spec.Paused {
			st.Message += " (paused)"
		}
	case st.Phase == v1.AppFailed:
		// A first rollout that never worked: stays failed until the
		// user applies a fix, paused or not (a pause and resume must
		// not hide the failure, nor start a deadline to fail again).
		st.Message = strings.TrimSuffix(strings.TrimSpace(st.Message), " (paused)")
		if a.Spec.Paused {
			st.Message += " (paused)"
		}
	case a.Spec.Paused:
		st.Stalled = false // no clock runs while paused
		st.Phase, st.Message = v1.AppPaused, fmt.Sprintf("paused with %d of %d instances on revision %d", len(cur), desired, st.Revision)
	case !rolling:
		// The rollout finished earlier. Either the App was scaled (or
		// an instance replaced) and new instances are on their way, or
		// something broke: an instance says what.
		if a.Status.Phase == v1.AppRunning || a.Status.Phase == v1.AppCompleted || st.Progressed == nil || rescaled {
			// It was whole until now, or has a new count to reach:
			// the deadline's clock starts, and every instance that
			// gets ready from here on is progress.
			st.Progressed = &now
			st.PeakUpdatedReady, st.PeakUpdatedAvailable = int32(newReady), int32(newAvailable)
		}
		if why := blame(cur); why != "" {
			st.Phase = v1.AppDegraded
			st.Message = fmt.Sprintf("%d of %d instances ready", st.ReadyReplicas, desired) + why
		} else {
			st.Phase = v1.AppProgressing
			st.Message = fmt.Sprintf("scaling to %d: %d ready", desired, st.ReadyReplicas) + waitingMinReady(a, newReady, newAvailable)
		}
		// Nothing to roll back to, but no waiting forever either, as
		// with a Kubernetes Deployment's progress deadline.
		deadline := progressDeadline(a)
		if left := deadline - now.Sub(*st.Progressed); left > 0 {
			requeue = left + 10*time.Millisecond
		} else {
			st.Phase, st.Stalled = v1.AppDegraded, true
			st.Message += fmt.Sprintf("; no progress for %s", deadline)
		}
	default:
		st.Phase = v1.AppProgressing
		st.Message = fmt.Sprintf("%d of %d new instances ready", newReady, desired) + waitingMinReady(a, newReady, newAvailable) + blame(cur)
		deadline := progressDeadline(a)
		since := a.Metadata.Created
		if st.RolloutStarted != nil {
			since = *st.RolloutStarted
		}
		if st.Progressed != nil && st.Progressed.After(since) {
			since = *st.Progressed
		}
		left := deadline - now.Sub(since)
		if left <= 0 {
			return 0, r.deadlineExceeded(ctx, a, rev, deadline, blame(cur))
		}
		requeue = left + 10*time.Millisecond
	}
	if steadyNext > 0 && (requeue == 0 || steadyNext < requeue) {
		requeue = steadyNext // a Failed rollout's instances may have stayed ready by then
	}
	if sameStatus(a.Status, st) {
		return requeue, nil
	}
	wrote := false
	out, err := store.Mutate(ctx, r.store, a.Metadata.Namespace, a.Metadata.Name, func(x *v1.App) error {
		wrote = false
		if x.Status.Revision != a.Status.Revision || x.Metadata.UID != a.Metadata.UID {
			// Someone applied a new revision meanwhile; the next pass
			// will see it.
			return store.ErrUnchanged
		}
		// The autoscaler and the server's load balancer write their
		// own fields, perhaps after the cache this pass read.
		st.AutoscaleReplicas, st.AutoscaleReason = x.Status.AutoscaleReplicas, x.Status.AutoscaleReason
		st.NodePorts = x.Status.NodePorts
		x.Status = st
		wrote = true
		return nil
	})
	if err != nil {
		return requeue, err
	}
	r.Apps.Observe(out)
	if wrote && complete && rolling {
		if completed {
			r.rec.Eventf(ctx, out, v1.EventNormal, "RolloutComplete", "revision %d ran to completion on %d/%d instances", st.Revision, desired, desired)
		} else {
			r.rec.Eventf(ctx, out, v1.EventNormal, "RolloutComplete", "revision %d is running with %d/%d instances ready (or done)", st.Revision, doneReady, desired)
		}
		r.observe(a, "completed", now)
	}
	return requeue, nil
}

// isRefusal tells an admission's no (policy, quota, an invalid or
// conflicting App) from its failing to decide.
func isRefusal(err error) bool {
	for _, e := range []error{v1.ErrForbidden, v1.ErrQuotaExceeded, v1.ErrInvalid, v1.ErrConflict, v1.ErrUnprocessable} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func progressDeadline(a *v1.App) time.Duration {
	if d := a.Spec.Strategy.ProgressDeadline.D(); d > 0 {
		return d
	}
	return v1.DefaultProgressDeadline.D()
}

func sameStatus(a, b v1.AppStatus) bool {
	return informer.EqualJSON(a, b)
}

// waitingMinReady says how many of the ready instances have yet to be
// ready for the strategy's minReady, if any.
func waitingMinReady(a *v1.App, ready, available int) string {
	if ready <= available {
		return ""
	}
	return fmt.Sprintf(" (%d of them not yet for minReady %s)", ready-available, a.Spec.Strategy.MinReady)
}

// failedRecovery is how long every instance of a Failed rollout must have
// been ready, without a break, for it to count as complete after all (or
// strategy.minReady, if longer).
var failedRecovery = 30 * time.Second

// countPhase counts the instances in phase.
func countPhase(l []*v1.Instance, phase string) int {
	n := 0
	for _, i := range l {
		if i.Status.Phase == phase {
			n++
		}
	}
	return n
}

// blame explains why new instances are not ready, from their status.
func blame(cur []*v1.Instance) string {
	for _, i := range cur {
		if i.Status.Ready || i.Status.Message == "" || i.Status.Phase == v1.PhaseSucceeded {
			continue
		}
		switch i.Status.Reason {
		case "", "Scheduling", "Scheduled":
			// Progress, not a problem.
			continue
		}
		return fmt.Sprintf(": instance %s: %s", i.Metadata.Name, i.Status.Message)
	}
	for _, i := range cur {
		if !i.Status.Ready && strings.HasPrefix(i.Status.Message, "readiness check failing") {
			return fmt.Sprintf(": instance %s: %s", i.Metadata.Name, i.Status.Message)
		}
	}
	return ""
}

// observe counts a finished rollout.
func (r *Rollout) observe(a *v1.App, outcome string, now time.Time) {
	if r.Metrics == nil {
		return
	}
	r.Metrics.Total.WithLabelValues(outcome).Inc()
	if s := a.Status.RolloutStarted; s != nil {
		r.Metrics.Duration.WithLabelValues(outcome).Observe(now.Sub(*s).Seconds())
	}
}

// markFailed records that the App's current revision failed its rollout,
// and announces it once: a pass that runs on a cache older than the write
// finds it already done.
func (r *Rollout) markFailed(ctx context.Context, a *v1.App, message, event string) error {
	from := a.Status.Revision
	wrote := false
	out, err := store.Mutate(ctx, r.store, a.Metadata.Namespace, a.Metadata.Name, func(x *v1.App) error {
		wrote = false
		if x.Status.Revision != from || x.Status.Phase == v1.AppFailed {
			return store.ErrUnchanged
		}
		x.Status.Phase, x.Status.Message = v1.AppFailed, message
		wrote = true
		return nil
	})
	if err != nil {
		return err
	}
	r.Apps.Observe(out)
	if wrote {
		r.rec.Eventf(ctx, a, v1.EventWarning, "ProgressDeadlineExceeded", "%s", event)
		r.observe(a, "failed", r.now())
	}
	return nil
}

// deadlineExceeded rolls back to the last revision that completed a
// rollout, or marks a first rollout failed.
func (r *Rollout) deadlineExceeded(ctx context.Context, a *v1.App, rev *v1.Revision, deadline time.Duration, why string) error {
	from := a.Status.Revision
	stable := a.Status.StableRevision
	reason := fmt.Sprintf("revision %d made no progress for %s%s", from, deadline, why)
	if stable == 0 || stable == from {
		return r.markFailed(ctx, a, reason, reason+"; no earlier working revision to roll back to")
	}
	cause := fmt.Sprintf("automatic rollback from revision %d: %s", from, reason)
	opts := apps.RollbackOptions{
		To: stable, From: from, Cause: cause,
		Automatic: &v1.RollbackRecord{From: from, To: stable, Time: r.now().UTC(), Reason: reason},
	}
	var refused error
	if r.Admit != nil {
		opts.Admit = func(a, prev *v1.App) error {
			refused = r.Admit(ctx, a, prev)
			return refused
		}
	}
	out, err := r.rollBack(ctx, a, opts)
	if refused != nil && !isRefusal(refused) {
		// Admission could not tell (the store is unavailable): the
		// next pass tries again.
		return fmt.Errorf("admit the rollback of %s to revision %d: %w", a.Metadata.Key(), stable, refused)
	}
	if err != nil && refused != nil {
		// The namespace's policy or quota no longer admits the old
		// template: the App stays on the failing revision, and says so.
		msg := fmt.Sprintf("%s; the rollback to revision %d was refused: %v", reason, stable, refused)
		return r.markFailed(ctx, a, msg, msg)
	}
	if errors.Is(err, v1.ErrConflict) {
		// A newer revision was applied after the cache this pass read;
		// its own rollout (and deadline) starts now.
		r.log.Debug("not rolling back: the app moved on", "app", a.Metadata.Key(), "err", err)
		return nil
	}
	if nr := (*apps.NoRevisionError)(nil); errors.As(err, &nr) {
		// Deleted from the history (by hand, or before the history
		// spared it): there is nothing to roll back to.
		return r.markFailed(ctx, a, fmt.Sprintf("%s; revision %d, the last working one, is gone from the history", reason, stable),
			fmt.Sprintf("%s; revision %d, the last working one, is gone from the history: not rolling back", reason, stable))
	}
	if errors.Is(err, v1.ErrUnprocessable) {
		// The failing revision already runs the stable template (it
		// was applied again by hand): nothing to roll back to.
		return r.markFailed(ctx, a, reason+"; it runs the template of revision "+fmt.Sprint(stable)+" already",
			fmt.Sprintf("%s; it runs the template of revision %d, the last working one, already: not rolling back", reason, stable))
	}
	if err != nil {
		return fmt.Errorf("roll back %s to revision %d: %w", a.Metadata.Key(), stable, err)
	}
	r.rec.Eventf(ctx, a, v1.EventWarning, "ProgressDeadlineExceeded", "%s; rolling back to revision %d", reason, stable)
	r.observe(a, "rolled_back", r.now())
	r.Apps.Observe(out)
	r.rec.Eventf(ctx, out, v1.EventWarning, "RolledBack", "rolled back from revision %d to the template of revision %d (now revision %d): %s", from, stable, out.Status.Revision, reason)
	return nil
}

// rollBack makes the automatic rollback under the API server's quota and
// claims locks, in its order, so that the admission check and the write
// are one step for the other writers of Apps.
func (r *Rollout) rollBack(ctx context.Context, a *v1.App, opts apps.RollbackOptions) (*v1.App, error) {
	if r.HoldQuota != nil {
		defer r.HoldQuota(ctx, a.Metadata.Namespace)()
	}
	if r.HoldClaims != nil {
		defer r.HoldClaims()()
	}
	out, _, err := apps.Rollback(ctx, r.store, a.Metadata.Namespace, a.Metadata.Name, opts)
	return out, err
}
