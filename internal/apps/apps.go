// Package apps keeps an App and its revision history consistent: every
// write that changes the template also creates the next immutable Revision,
// in the same etcd transaction, so the two can never disagree.
//
// Both the API server (apply, rollout undo) and the rollout controller
// (automatic rollback) write Apps through this package. It does no
// admission or authorization; callers do.
package apps

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
)

var (
	appKind      = store.KindFor[*v1.App]()
	revisionKind = store.KindFor[*v1.Revision]()
)

// Result says what a Save did.
type Result string

// Save results.
const (
	Created    Result = "created"
	Configured Result = "configured"
	Unchanged  Result = "unchanged"
)

// Change is a write to an App.
type Change struct {
	// App is the desired App. On update its metadata.revision must be the
	// revision of Prev.
	App *v1.App
	// Prev is the App as stored, nil when creating.
	Prev *v1.App
	// Image is the template's image qualified with the registry.
	Image string
	// ImageDigest pins the template's image, when known.
	ImageDigest string
	// Resolve, when set and ImageDigest is empty, finds the digest; it is
	// called only when a new revision is made.
	Resolve func() string
	// Cause is recorded on a new revision ("kubectl.kubernetes.io/change-cause"-like).
	Cause string
	// RolledBack marks an automatic rollback: the new revision is
	// written with phase RolledBack, counts as stable (its template
	// completed a rollout before), and the record (its Revision filled
	// in) goes into the status in the same transaction.
	RolledBack *v1.RollbackRecord
	// DryRun makes Save do everything but write: the App comes back as
	// it would be stored, and the Result says what would happen. A
	// create is not checked against an existing App; callers read it
	// first.
	DryRun bool
}

// Save creates or updates the App. When the template differs from the
// current revision's (or there is none), it writes Revision N+1 in the same
// transaction and points the App at it. Status is carried over from Prev:
// users cannot write it. A concurrent writer makes Save fail with
// v1.ErrConflict; nothing is written then.
func Save(ctx context.Context, s *store.Store, c Change) (Result, error) {
	res, err := save(ctx, s, c)
	if errors.Is(err, v1.ErrTooLarge) {
		err = fmt.Errorf("%w; an App is written together with its new revision, so its spec must stay under about %d KiB: move big values into Secrets or files in the image", err, store.MaxWriteBytes>>11)
	}
	return res, err
}

func save(ctx context.Context, s *store.Store, c Change) (Result, error) {
	a := c.App
	now := time.Now().UTC().Truncate(time.Millisecond)
	hash := a.Spec.Template.Hash()
	digest := func() string {
		if c.ImageDigest == "" && c.Resolve != nil {
			c.ImageDigest = c.Resolve()
		}
		return c.ImageDigest
	}
	if c.Prev == nil {
		digest()
		a.Status = v1.AppStatus{Revision: 1, Phase: v1.AppProgressing, RolloutStarted: &now, TemplateHash: StatusHash(hash, c.Image, c.ImageDigest)}
		rev := newRevision(a, 1, hash, c.Image, c.ImageDigest, c.Cause)
		if c.DryRun {
			return Created, nil
		}
		if err := s.Txn().Create(a).Create(rev).Commit(ctx); err != nil {
			if errors.Is(err, v1.ErrConflict) {
				// The app or a stale revision of a deleted namesake
				// exists.
				if _, gerr := s.Get(ctx, appKind, a.Metadata.Namespace, a.Metadata.Name); gerr == nil {
					return "", fmt.Errorf("app %q %w", a.Metadata.Key(), v1.ErrAlreadyExists)
				}
			}
			return "", err
		}
		return Created, nil
	}
	prev := c.Prev
	a.Metadata.UID, a.Metadata.Created, a.Metadata.Revision = prev.Metadata.UID, prev.Metadata.Created, prev.Metadata.Revision
	a.Metadata.Deleting = prev.Metadata.Deleting
	a.Status = prev.Status
	// The autoscaler's decision goes with autoscale: spec.replicas
	// counts again, and an autoscale set later starts from it.
	stale := a.Spec.Autoscale == nil && (a.Status.AutoscaleReplicas != 0 || a.Status.AutoscaleReason != "")
	if stale {
		a.Status.AutoscaleReplicas, a.Status.AutoscaleReason = 0, ""
	}
	var templateChanged bool
	switch {
	case prev.Status.TemplateHash != "" && c.ImageDigest == "":
		// The common case: compare with what the App carries, and pin
		// the image only if the template changed.
		templateChanged = !strings.HasPrefix(prev.Status.TemplateHash, hash+"|"+c.Image+"|")
	case prev.Status.TemplateHash != "":
		templateChanged = prev.Status.TemplateHash != StatusHash(hash, c.Image, c.ImageDigest)
	default:
		cur, err := store.Get[*v1.Revision](ctx, s, a.Metadata.Namespace, v1.RevisionName(a.Metadata.Name, prev.Status.Revision))
		if err != nil && !errors.Is(err, v1.ErrNotFound) {
			return "", err
		}
		templateChanged = cur == nil || cur.Spec.Hash != hash || cur.Spec.Image != c.Image || (c.ImageDigest != "" && cur.Spec.ImageDigest != c.ImageDigest)
	}
	if !templateChanged && !stale && sameApp(a, prev) {
		return Unchanged, nil
	}
	txn := s.Txn()
	if templateChanged {
		digest()
		a.Status.TemplateHash = StatusHash(hash, c.Image, c.ImageDigest)
		n := prev.Status.Revision + 1
		a.Status.Revision = n
		a.Status.Phase = v1.AppProgressing
		a.Status.Message = ""
		a.Status.RolloutStarted = &now
		a.Status.Progressed = nil
		a.Status.PeakUpdatedReady, a.Status.PeakUpdatedAvailable = 0, 0
		a.Status.Stalled = false
		if rb := c.RolledBack; rb != nil {
			rec := *rb
			rec.Revision = n
			a.Status.RolledBack = &rec
			a.Status.Phase, a.Status.Message, a.Status.StableRevision = v1.AppRolledBack, rec.Reason, n
		}
		txn.Create(newRevision(a, n, hash, c.Image, c.ImageDigest, c.Cause))
	}
	if templateChanged || a.Spec.HistoryLimit() != prev.Spec.HistoryLimit() {
		old, err := expired(ctx, s, a)
		if err != nil {
			return "", err
		}
		for _, name := range old {
			txn.Delete(revisionKind, a.Metadata.Namespace, name, 0)
		}
	}
	if c.DryRun {
		return Configured, nil
	}
	if err := txn.Update(a).Commit(ctx); err != nil {
		return "", err
	}
	return Configured, nil
}

// maxPrunePerWrite bounds the revisions one write deletes, to stay within
// a transaction's limit beside the App's update and the new revision (a
// round 100, with room to spare); a later write deletes the rest.
const maxPrunePerWrite = store.MaxTxnOps - 28

// expired names the revisions of a that its history limit no longer
// keeps, oldest first: all before a.Status.Revision but the newest
// HistoryLimit of them, sparing the stable revision, which an automatic
// rollback returns to, and those that instances still run (as
// Kubernetes keeps a ReplicaSet while it has pods): a paused rollout
// grows its old side from theirs.
func expired(ctx context.Context, s *store.Store, a *v1.App) ([]string, error) {
	ns, name := a.Metadata.Namespace, a.Metadata.Name
	revs, err := History(ctx, s, ns, name)
	if err != nil {
		return nil, err
	}
	var older []*v1.Revision
	for _, r := range revs {
		if r.Spec.Number < a.Status.Revision {
			older = append(older, r)
		}
	}
	if len(older) <= a.Spec.HistoryLimit() {
		return nil, nil
	}
	sel := v1.Selector{{Key: v1.LabelApp, Op: v1.OpEqual, Value: name}}
	insts, _, err := store.List[*v1.Instance](ctx, s, store.ListOptions{Namespace: ns, Selector: sel})
	if err != nil {
		return nil, err
	}
	running := map[int64]bool{a.Status.StableRevision: true}
	for _, i := range insts {
		// A namesake's instances run its revisions, not a's.
		if i.Spec.App == name && !i.ForeignTo(a) {
			running[i.Spec.Revision] = true
		}
	}
	// A revision whose template (and pinned image) a newer one has
	// again, as an undo makes, goes before any distinct one: the undo
	// moves it, as Kubernetes does, instead of costing the oldest
	// distinct template its place.
	newer := map[string]bool{a.Status.TemplateHash: true}
	var dups, rest []*v1.Revision
	for k := len(older) - 1; k >= 0; k-- {
		r := older[k]
		key := StatusHash(r.Spec.Hash, r.Spec.Image, r.Spec.ImageDigest)
		if newer[key] {
			dups = append(dups, r)
		} else {
			rest = append(rest, r)
		}
		newer[key] = true
	}
	slices.Reverse(dups)
	slices.Reverse(rest)
	older = append(dups, rest...)
	var out []string
	for _, r := range older[:len(older)-a.Spec.HistoryLimit()] {
		if running[r.Spec.Number] {
			continue
		}
		if out = append(out, r.Metadata.Name); len(out) == maxPrunePerWrite {
			break
		}
	}
	return out, nil
}

func newRevision(a *v1.App, n int64, hash, image, digest, cause string) *v1.Revision {
	return &v1.Revision{
		TypeMeta: v1.TypeMeta{Kind: "Revision", APIVersion: v1.Version},
		Metadata: v1.ObjectMeta{
			Name:      v1.RevisionName(a.Metadata.Name, n),
			Namespace: a.Metadata.Namespace,
			Labels:    map[string]string{v1.LabelApp: a.Metadata.Name},
		},
		Spec: v1.RevisionSpec{App: a.Metadata.Name, Number: n, Template: a.Spec.Template, Image: image, ImageDigest: digest, Hash: hash, ChangeCause: cause},
	}
}

// sameApp compares what a user can change besides the template.
func sameApp(a, b *v1.App) bool {
	x, y := *a, *b
	x.Status, y.Status = v1.AppStatus{}, v1.AppStatus{}
	x.Metadata.Revision, y.Metadata.Revision = 0, 0
	return equalJSON(&x, &y)
}

// RollbackOptions says what Rollback restores and when.
type RollbackOptions struct {
	// To is the revision whose template comes back; 0 is the one before
	// the current.
	To int64
	// From, when set, is the revision being rolled back: if the App has
	// moved on from it meanwhile, nothing is written and the error wraps
	// v1.ErrConflict.
	From int64
	// Cause is recorded on the new revision.
	Cause string
	// Automatic is set by the rollout controller (see Change.RolledBack).
	Automatic *v1.RollbackRecord
	// Admit, when set, checks the App with the restored template (prev
	// is the App as stored) before anything is written: a rollback a user
	// asks for passes the same admission as an apply.
	Admit func(a, prev *v1.App) error
}

// Rollback points the App at the template of revision opts.To by creating
// a new revision with that template and pinned digest. It returns the App
// as written and the revision whose template it restored.
func Rollback(ctx context.Context, s *store.Store, ns, name string, opts RollbackOptions) (*v1.App, int64, error) {
	to, from := opts.To, opts.From
	for attempt := 0; ; attempt++ {
		a, err := store.Get[*v1.App](ctx, s, ns, name)
		if err != nil {
			return nil, 0, err
		}
		if from != 0 && a.Status.Revision != from {
			if opts.From == 0 {
				return nil, 0, fmt.Errorf("%w: app %q moved from revision %d to %d while it was being rolled back (an automatic rollback or an apply); see gantry rollout history app/%s and undo again, or name the revision with --to-revision",
					v1.ErrConflict, name, from, a.Status.Revision, name)
			}
			return nil, 0, fmt.Errorf("%w: app %q moved on from revision %d to %d", v1.ErrConflict, name, from, a.Status.Revision)
		}
		if to == 0 && from == 0 {
			// "The previous revision" is the one before what this
			// read found: a retry that found the App on another
			// revision (the automatic rollback committed meanwhile)
			// would otherwise undo that instead, and could put back
			// the very revision the user meant to undo.
			from = a.Status.Revision
		}
		target := to
		if target == 0 {
			target, err = previousRevision(ctx, s, a)
			if err != nil {
				return nil, 0, err
			}
		}
		if target == a.Status.Revision {
			return nil, 0, fmt.Errorf("%w: app %q already runs revision %d", v1.ErrUnprocessable, name, target)
		}
		rev, err := store.Get[*v1.Revision](ctx, s, ns, v1.RevisionName(name, target))
		if errors.Is(err, v1.ErrNotFound) {
			return nil, 0, &NoRevisionError{App: name, Revision: target, Current: a.Status.Revision}
		}
		if err != nil {
			return nil, 0, err
		}
		prev := *a
		a.Spec.Template = rev.Spec.Template
		if opts.Admit != nil {
			// Admission judges a copy: the restored template must
			// stay the revision's to the byte, or its hash differs
			// and every instance still running it is replaced
			// instead of kept, whatever admission touches.
			c, err := cloneApp(a)
			if err != nil {
				return nil, 0, err
			}
			if err := opts.Admit(c, &prev); err != nil {
				var fe v1.FieldErrors
				if errors.As(err, &fe) {
					// The caller sent no spec: say which part clashes.
					return nil, 0, fmt.Errorf("%w: the template of revision %d does not fit the rest of app %q as it is now (%v): change the App so that it does (its routes, say), then roll back", v1.ErrUnprocessable, target, name, fe)
				}
				return nil, 0, err
			}
		}
		// Each attempt names its own target: a retry after a conflict
		// may find another previous revision.
		cause := opts.Cause
		if cause == "" {
			cause = fmt.Sprintf("rollback to revision %d", target)
		}
		_, err = Save(ctx, s, Change{App: a, Prev: &prev, Image: rev.Spec.Image, ImageDigest: rev.Spec.ImageDigest, Cause: cause, RolledBack: opts.Automatic})
		if errors.Is(err, v1.ErrConflict) && attempt < 10 {
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		if a.Status.Revision == prev.Status.Revision {
			return nil, 0, fmt.Errorf("%w: app %q already runs the template of revision %d (as revision %d); nothing to roll back", v1.ErrUnprocessable, name, target, prev.Status.Revision)
		}
		return a, target, nil
	}
}

// NoRevisionError is Rollback's error for a revision that does not exist
// (any more: see RevisionHistoryLimit). It is an v1.ErrUnprocessable.
type NoRevisionError struct {
	App      string
	Revision int64
	Current  int64 // the App's current revision
}

func (e *NoRevisionError) Error() string {
	if e.Current > 0 && e.Revision > e.Current {
		return fmt.Sprintf("app/%s has no revision %d: its current revision is %d", e.App, e.Revision, e.Current)
	}
	return fmt.Sprintf("app/%s has no revision %d: gantry rollout history app/%s lists those it keeps (revisionHistoryLimit)", e.App, e.Revision, e.App)
}

func (e *NoRevisionError) Unwrap() error { return v1.ErrUnprocessable }

// previousRevision finds the newest revision before the current one whose
// template differs from it.
func previousRevision(ctx context.Context, s *store.Store, a *v1.App) (int64, error) {
	revs, err := History(ctx, s, a.Metadata.Namespace, a.Metadata.Name)
	if err != nil {
		return 0, err
	}
	var curHash string
	for _, r := range revs {
		if r.Spec.Number == a.Status.Revision {
			curHash = r.Spec.Hash
		}
	}
	for i := len(revs) - 1; i >= 0; i-- {
		r := revs[i]
		if r.Spec.Number < a.Status.Revision && r.Spec.Hash != curHash {
			return r.Spec.Number, nil
		}
	}
	return 0, fmt.Errorf("%w: app %q has no earlier revision to roll back to", v1.ErrUnprocessable, a.Metadata.Name)
}

// History lists an App's revisions, oldest first.
func History(ctx context.Context, s *store.Store, ns, name string) ([]*v1.Revision, error) {
	sel := v1.Selector{{Key: v1.LabelApp, Op: v1.OpEqual, Value: name}}
	revs, _, err := store.List[*v1.Revision](ctx, s, store.ListOptions{Namespace: ns, Selector: sel})
	if err != nil {
		return nil, err
	}
	sortRevisions(revs)
	return revs, nil
}

func sortRevisions(revs []*v1.Revision) {
	for i := 1; i < len(revs); i++ {
		for j := i; j > 0 && revs[j].Spec.Number < revs[j-1].Spec.Number; j-- {
			revs[j], revs[j-1] = revs[j-1], revs[j]
		}
	}
}

// Delete removes an App and its revisions: in one transaction unless
// there are more than one takes (see RevisionHistoryLimit). Its
// instances are stopped by the rollout controller, which notices they
// have no App. With rev 0 the delete is unconditional: a concurrent status
// write by a controller makes it read again and retry.
func Delete(ctx context.Context, s *store.Store, ns, name string, rev int64) (*v1.App, error) {
	for attempt := 0; ; attempt++ {
		a, err := store.Get[*v1.App](ctx, s, ns, name)
		if err != nil {
			return nil, err
		}
		if rev != 0 && rev != a.Metadata.Revision {
			return nil, fmt.Errorf("app %q was modified (now at revision %d): %w", name, a.Metadata.Revision, v1.ErrConflict)
		}
		revs, err := History(ctx, s, ns, name)
		if err != nil {
			return nil, err
		}
		// More revisions than one transaction takes go first, the
		// oldest first, each batch only while the App is as read; the
		// App goes with the newest and with its current and stable
		// revisions, so that no revision outlives it and a delete that
		// fails half-way leaves the App what it runs and returns to.
		revs = keepLast(revs, a.Status.Revision, a.Status.StableRevision)
		for len(revs) >= store.MaxTxnOps && err == nil {
			txn := s.Txn().Unmodified(appKind, ns, name, a.Metadata.Revision)
			for _, r := range revs[:store.MaxTxnOps-1] {
				txn.Delete(revisionKind, ns, r.Metadata.Name, 0)
			}
			if err = txn.Commit(ctx); err == nil {
				revs = revs[store.MaxTxnOps-1:]
			}
		}
		if err == nil {
			txn := s.Txn().Delete(appKind, ns, name, a.Metadata.Revision)
			for _, r := range revs {
				txn.Delete(revisionKind, ns, r.Metadata.Name, 0)
			}
			err = txn.Commit(ctx)
		}
		if errors.Is(err, v1.ErrConflict) && rev == 0 && attempt < 20 {
			continue
		}
		if err != nil {
			return nil, err
		}
		return a, nil
	}
}

// keepLast moves revisions numbered cur and stable to the end of revs,
// keeping the order of the rest.
func keepLast(revs []*v1.Revision, cur, stable int64) []*v1.Revision {
	out := make([]*v1.Revision, 0, len(revs))
	var last []*v1.Revision
	for _, r := range revs {
		if n := r.Spec.Number; n == cur || n == stable {
			last = append(last, r)
		} else {
			out = append(out, r)
		}
	}
	return append(out, last...)
}

// StatusHash is what AppStatus.TemplateHash records: the template's hash
// and the image it resolved to.
func StatusHash(templateHash, image, digest string) string {
	return templateHash + "|" + image + "|" + digest
}

// LabelTemplateHash marks which template (and pinned image) an instance
// runs: InstanceHash of its revision's StatusHash.
const LabelTemplateHash = "gantry.dev/template-hash"

// InstanceHash is the LabelTemplateHash value of the instances of a
// revision whose StatusHash is statusHash: an App runs its current
// template where its instances carry InstanceHash(a.Status.TemplateHash).
func InstanceHash(statusHash string) string {
	sum := sha256.Sum256([]byte(statusHash))
	return hex.EncodeToString(sum[:5])
}
