package apiserver

import (
	"context"
	"errors"
	"fmt"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/apps"
	"github.com/gantry-dev/gantry/internal/store"
)

// Deleting a namespace.
//
// The namespace is first marked as being deleted, so that writes into it
// are refused (409) from then on, then what is in it is deleted, then the
// namespace itself. A create that read the namespace just before the mark
// (from the cache, which trails the store) can still land after its
// contents were listed; sweeps catch those: one right after the delete,
// two more within sweepAfterDelete, and one of every namespace every
// sweepEvery, which also finishes what a server that died half-way
// through a delete left. A sweep deletes an object only while its
// namespace is absent (one transaction), so a namespace of the same name
// created meanwhile keeps what is put in it.

// sweepAfterDelete are the delays after a namespace's delete at which it
// is swept again: past the time a write may spend between reading the
// namespace and storing (an App's image digest lookup, at most 5 s).
var sweepAfterDelete = []time.Duration{2 * time.Second, 15 * time.Second}

// sweepEvery is how often every namespace is swept.
const sweepEvery = 10 * time.Minute

// resumeDeleteAfter is how long a namespace may stay marked as being
// deleted before a sweep finishes the delete.
const resumeDeleteAfter = time.Minute

// sweepListed is called by a sweep of every namespace once it has listed
// them; tests use it to make a namespace in between.
var sweepListed = func() {}

// notDeleting refuses writes into a namespace being deleted.
func notDeleting(ns *v1.Namespace) error {
	if ns.Metadata.Deleting != nil {
		return fmt.Errorf("%w: namespace %q is being deleted", v1.ErrConflict, ns.Metadata.Name)
	}
	return nil
}

// deleteNamespace removes a namespace and everything in it. Instances are
// left to the rollout controller, which stops those whose App is gone.
// Everything it deletes after the mark holds only while the namespace is
// still the one it marked: a second DELETE running late must not empty
// a namespace made again under the same name.
func (s *Server) deleteNamespace(ctx context.Context, name string, rev int64) (v1.Object, error) {
	if name == v1.DefaultNamespace {
		return nil, fmt.Errorf("%w: the default namespace cannot be deleted", v1.ErrUnprocessable)
	}
	nsKind := store.KindFor[*v1.Namespace]()
	ns, err := store.Get[*v1.Namespace](ctx, s.store, "", name)
	if err != nil {
		return nil, err
	}
	if rev != 0 && rev != ns.Metadata.Revision {
		return nil, fmt.Errorf("namespace %q was modified: %w", name, v1.ErrConflict)
	}
	if ns.Metadata.Deleting == nil {
		now := time.Now().UTC()
		ns.Metadata.Deleting = &now
		if err := s.store.Update(ctx, ns); err != nil {
			return nil, fmt.Errorf("mark namespace %s as being deleted: %w", name, err)
		}
	}
	marked := ns.Metadata.Revision
	changed := fmt.Errorf("namespace %q changed while it was being deleted (made again, or written): %w", name, v1.ErrConflict)
	// still reports whether the namespace is still the one marked:
	// errGone when another delete finished it meanwhile.
	errGone := errors.New("deleted meanwhile")
	still := func() error {
		cur, err := store.Get[*v1.Namespace](ctx, s.store, "", name)
		if errors.Is(err, v1.ErrNotFound) {
			return errGone
		}
		if err == nil && cur.Metadata.Revision != marked {
			return changed
		}
		return err
	}
	appList, _, err := store.List[*v1.App](ctx, s.store, store.ListOptions{Namespace: name})
	if err != nil {
		return nil, err
	}
	for _, a := range appList {
		if err := still(); errors.Is(err, errGone) {
			return ns, nil // another delete of it finished first
		} else if err != nil {
			return nil, err
		}
		if _, err := apps.Delete(ctx, s.store, name, a.Metadata.Name, 0); err != nil && !errors.Is(err, v1.ErrNotFound) {
			return nil, fmt.Errorf("delete app %s: %w", a.Metadata.Name, err)
		}
	}
	for _, k := range sweptKinds() {
		if k.Kind == "App" || k.Kind == "Revision" {
			continue
		}
		objs, _, err := s.store.List(ctx, k, store.ListOptions{Namespace: name})
		if err != nil {
			return nil, err
		}
		for _, o := range objs {
			err := s.store.Txn().Unmodified(nsKind, "", name, marked).Delete(k, name, o.GetMeta().Name, 0).Commit(ctx)
			if errors.Is(err, v1.ErrConflict) {
				if err := still(); errors.Is(err, errGone) {
					return ns, nil // another delete of it finished first
				} else if err != nil {
					return nil, err
				}
				continue // the object went meanwhile
			}
			if err != nil {
				return nil, err
			}
			s.afterDelete(o)
		}
	}
	// Bindings name their namespace by name: left behind, they would
	// grant their roles again in a later namespace of the same name. They
	// go while the namespace is still marked, so that a delete stopped
	// half-way is finished by the next one (the namespace's sweeps cover
	// namespaced kinds only), and again after it, for any made meanwhile.
	if err := deleteMatching(ctx, s, func(b *v1.RoleBinding) bool { return b.Spec.Namespace == name }); err != nil {
		return nil, fmt.Errorf("delete the role bindings of namespace %s: %w", name, err)
	}
	old, err := s.store.Delete(ctx, nsKind, "", name, marked)
	switch {
	case errors.Is(err, v1.ErrNotFound):
		// Another delete of it (a retry, or a sweep finishing it) got
		// there first: deleted, as asked.
		old = ns
	case errors.Is(err, v1.ErrConflict):
		return nil, changed
	case err != nil:
		return nil, err
	}
	// Under authMu: a binding whose check saw the namespace is stored
	// by now, and goes; one checked later finds it gone.
	s.authMu.Lock()
	err = deleteMatching(ctx, s, func(b *v1.RoleBinding) bool { return b.Spec.Namespace == name })
	s.authMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("namespace %s was deleted, but not all of its role bindings: %w; delete them with `gantry delete rolebinding NAME`", name, err)
	}
	if err := s.sweep(ctx, name); err != nil {
		s.log.Warn("sweep a deleted namespace", "namespace", name, "err", err)
	}
	go s.sweepLater(ctx, name)
	return old, nil
}

// sweepLater sweeps a deleted namespace again after each of
// sweepAfterDelete, for as long as the server serves (or a minute, for a
// server that is not serving).
func (s *Server) sweepLater(ctx context.Context, name string) {
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if life := s.life.Load(); life != nil {
		bg = *life
	}
	for _, d := range sweepAfterDelete {
		select {
		case <-bg.Done():
			return
		case <-time.After(d):
		}
		sctx, cancel := context.WithTimeout(bg, time.Minute)
		err := s.sweep(sctx, name)
		cancel()
		if err != nil && bg.Err() == nil {
			s.log.Warn("sweep a deleted namespace", "namespace", name, "err", err)
		}
	}
}

// sweptKinds are the kinds a sweep deletes: every namespaced one but
// Instances, which the rollout controller stops and deletes once their
// App is gone, and Events, which expire.
func sweptKinds() []*v1.KindInfo {
	var out []*v1.KindInfo
	for _, k := range v1.Kinds() {
		if k.Namespaced && k.Kind != "Instance" && k.Kind != "Event" {
			out = append(out, k)
		}
	}
	return out
}

// sweep deletes the objects left in namespaces that do not exist: in
// namespace only, or in every namespace when it is "". Each delete holds
// only while the namespace is absent and the object is as listed.
func (s *Server) sweep(ctx context.Context, namespace string) error {
	nsKind := store.KindFor[*v1.Namespace]()
	live := map[string]bool{}
	if namespace == "" {
		list, _, err := store.List[*v1.Namespace](ctx, s.store, store.ListOptions{})
		if err != nil {
			return err
		}
		for _, n := range list {
			live[n.Metadata.Name] = true
			// A delete that stopped half-way (its server died, or etcd
			// failed it) is finished here.
			if d := n.Metadata.Deleting; d != nil && time.Since(*d) > resumeDeleteAfter {
				if _, err := s.deleteNamespace(ctx, n.Metadata.Name, n.Metadata.Revision); err != nil && !errors.Is(err, v1.ErrNotFound) {
					s.log.Warn("finish the delete of a namespace", "namespace", n.Metadata.Name, "err", err)
				} else if err == nil {
					s.log.Info("finished the delete of a namespace", "namespace", n.Metadata.Name)
				}
			}
		}
		sweepListed()
	} else if _, err := store.Get[*v1.Namespace](ctx, s.store, "", namespace); err == nil {
		return nil // it exists (again): nothing is left over
	} else if !errors.Is(err, v1.ErrNotFound) {
		return err
	}
	var errs []error
	swept := 0
	for _, k := range sweptKinds() {
		objs, _, err := s.store.List(ctx, k, store.ListOptions{Namespace: namespace})
		if err != nil {
			return err
		}
		for _, o := range objs {
			m := o.GetMeta()
			if live[m.Namespace] {
				continue
			}
			err := s.store.Txn().Unmodified(nsKind, "", m.Namespace, 0).Delete(k, m.Namespace, m.Name, m.Revision).Commit(ctx)
			switch {
			case err == nil:
				swept++
				s.afterDelete(o)
			case errors.Is(err, v1.ErrConflict):
				// The namespace is back, or the object changed: the next
				// sweep looks again.
			default:
				errs = append(errs, err)
			}
		}
	}
	if swept > 0 {
		s.log.Info("deleted objects left in deleted namespaces", "namespace", namespace, "objects", swept)
	}
	return errors.Join(errs...)
}

// sweepLoop sweeps every namespace at start and every sweepEvery until
// ctx ends; the sweeps a namespace's delete schedules end with it too.
func (s *Server) sweepLoop(ctx context.Context) {
	s.life.Store(&ctx)
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		if err := s.sweep(ctx, ""); err != nil && ctx.Err() == nil {
			s.log.Warn("sweep deleted namespaces", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
