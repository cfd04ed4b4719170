package apiserver

import (
	"context"
	"fmt"
	"math"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/apps"
	"github.com/gantry-dev/gantry/internal/keylock"
	"github.com/gantry-dev/gantry/internal/store"
)

// QuotaError says which quota an admission would exceed, with the numbers.
type QuotaError struct {
	Namespace string
	Resource  string
	Used      string
	Requested string
	Limit     string
}

func (e *QuotaError) Error() string {
	return fmt.Sprintf("quota exceeded in namespace %q: %s: used %s + requested %s > limit %s", e.Namespace, e.Resource, e.Used, e.Requested, e.Limit)
}

// Is makes errors.Is(err, v1.ErrQuotaExceeded) true.
func (e *QuotaError) Is(target error) bool { return target == v1.ErrQuotaExceeded }

// appFootprint is what an App reserves: its replicas, each at the larger
// of the template's requests and those of the instances it runs now
// (run, a zero value for none: during a rollout, or a pause in one, a
// scale adds instances of the old template, which may ask for more),
// plus, when surging, the rollout's extra instances at the template's
// own requests (they run the new template). A rollout to smaller requests
// counts no surge of that resource: each old instance it replaces frees
// more than the new one takes, so it shrinks the App, which a quota
// never refuses, even one lowered below what the namespace uses.
// The products and sums saturate at the largest int64: no quantity can
// wrap around and make a namespace's use look small.
func appFootprint(a *v1.App, surging bool, run requests) (cpu v1.CPU, mem v1.Bytes, instances int) {
	n := int(a.DesiredReplicas())
	tmpl := requestsOf(&a.Spec.Template)
	each := run.max(tmpl)
	cpu = v1.CPU(satMul(int64(each.cpu), int64(n)))
	mem = v1.Bytes(satMul(int64(each.mem), int64(n)))
	if surging && a.Spec.Strategy.MaxSurge != nil {
		extra := a.Spec.Strategy.MaxSurge.Resolve(n, true)
		if tmpl.cpu >= run.cpu {
			cpu = v1.CPU(satAdd(int64(cpu), satMul(int64(tmpl.cpu), int64(extra))))
		}
		if tmpl.mem >= run.mem {
			mem = v1.Bytes(satAdd(int64(mem), satMul(int64(tmpl.mem), int64(extra))))
		}
		n += extra
	}
	return cpu, mem, n
}

// requests are what one instance asks for.
type requests struct {
	cpu v1.CPU
	mem v1.Bytes
}

func requestsOf(t *v1.Template) requests {
	return requests{t.Resources.CPU, t.Resources.Memory}
}

func (r requests) max(o requests) requests {
	return requests{max(r.cpu, o.cpu), max(r.mem, o.mem)}
}

// quotaUse is what a namespace's Apps hold, but for the one being
// checked.
type quotaUse struct {
	cpu             v1.CPU
	mem             v1.Bytes
	instances, apps int
	// running is, for the App being checked, the largest requests of
	// its instances now (not being deleted).
	running requests
	// rolling says that the App being checked has instances of another
	// template than its current one: a rollout runs, or waits paused,
	// and will surge.
	rolling bool
}

// namespaceUse lists the Apps of namespace ns and their instances once,
// and sums what they hold, leaving out the App named app.
func (s *Server) namespaceUse(ctx context.Context, ns, app string) (quotaUse, error) {
	var u quotaUse
	appList, _, err := store.List[*v1.App](ctx, s.store, store.ListOptions{Namespace: ns})
	if err != nil {
		return u, err
	}
	insts, _, err := store.List[*v1.Instance](ctx, s.store, store.ListOptions{Namespace: ns})
	if err != nil {
		return u, err
	}
	current := map[string]string{} // App name → its instances' hash
	for _, o := range appList {
		if o.Status.TemplateHash != "" {
			current[o.Metadata.Name] = apps.InstanceHash(o.Status.TemplateHash)
		}
	}
	running := map[string]requests{}
	live := map[string]liveUse{}
	rolling := map[string]bool{}
	for _, i := range insts {
		if i.Metadata.Deleting != nil || i.Status.Finished() {
			continue
		}
		if h, cur := i.Metadata.Labels[apps.LabelTemplateHash], current[i.Spec.App]; h != "" && cur != "" && h != cur {
			rolling[i.Spec.App] = true
		}
		r := requestsOf(&i.Spec.Template)
		running[i.Spec.App] = running[i.Spec.App].max(r)
		l := live[i.Spec.App]
		l.cpu, l.mem, l.instances = v1.CPU(satAdd(int64(l.cpu), int64(r.cpu))), v1.Bytes(satAdd(int64(l.mem), int64(r.mem))), l.instances+1
		live[i.Spec.App] = l
	}
	u.running, u.rolling = running[app], rolling[app]
	for _, o := range appList {
		if o.Metadata.Name == app {
			continue
		}
		// An App counts at its replicas, or at the instances it runs
		// when they hold more: a rollout's surge, kept for as long as
		// the rollout is paused or slow, counts against the quota of
		// the Apps written meanwhile. An App in a rollout counts with
		// the surge it may still take, even one paused before it
		// surged: resuming it takes no admission.
		c, m, n := appFootprint(o, rolling[o.Metadata.Name], running[o.Metadata.Name])
		l := live[o.Metadata.Name]
		c, m, n = max(c, l.cpu), max(m, l.mem), max(n, l.instances)
		u.cpu, u.mem = v1.CPU(satAdd(int64(u.cpu), int64(c))), v1.Bytes(satAdd(int64(u.mem), int64(m)))
		u.instances, u.apps = u.instances+n, u.apps+1
	}
	return u, nil
}

// liveUse is what an App's instances (not being deleted, not finished)
// ask for together.
type liveUse struct {
	cpu       v1.CPU
	mem       v1.Bytes
	instances int
}

// satMul and satAdd are a*b and a+b for non-negative operands, or the
// largest int64 when that would overflow.
func satMul(a, b int64) int64 {
	if a == 0 || b == 0 {
		return 0
	}
	if a > math.MaxInt64/b {
		return math.MaxInt64
	}
	return a * b
}

func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// checkQuota refuses an App whose footprint, added to the rest of the
// namespace, exceeds the namespace quota, or whose containers exceed the
// per-container maximums.
func (s *Server) checkQuota(ctx context.Context, ns *v1.Namespace, a *v1.App, prev *v1.App) error {
	if err := checkLimits(ns, a); err != nil || ns.Spec.Quota == nil {
		return err
	}
	use, err := s.namespaceUse(ctx, ns.Metadata.Name, a.Metadata.Name)
	if err != nil {
		return err
	}
	return quotaAllows(ns, use, a, prev)
}

// checkLimits refuses containers over the namespace's per-container
// maximums.
func checkLimits(ns *v1.Namespace, a *v1.App) error {
	l := ns.Spec.Limits
	if l == nil {
		return nil
	}
	r := a.Spec.Resources
	switch {
	case l.MaxCPU > 0 && r.CPU > l.MaxCPU:
		return fmt.Errorf("%w: spec.resources.cpu %s is above the per-container maximum %s of namespace %q", v1.ErrQuotaExceeded, r.CPU, l.MaxCPU, ns.Metadata.Name)
	case l.MaxCPU > 0 && r.CPULimit() > l.MaxCPU:
		return fmt.Errorf("%w: spec.resources.limits.cpu %s is above the per-container maximum %s of namespace %q", v1.ErrQuotaExceeded, r.CPULimit(), l.MaxCPU, ns.Metadata.Name)
	case l.MaxMemory > 0 && r.MemoryLimit() > l.MaxMemory:
		return fmt.Errorf("%w: memory %s is above the per-container maximum %s of namespace %q", v1.ErrQuotaExceeded, r.MemoryLimit(), l.MaxMemory, ns.Metadata.Name)
	}
	return nil
}

// quotaAllows is the quota check of a against what the rest of its
// namespace uses.
func quotaAllows(ns *v1.Namespace, use quotaUse, a, prev *v1.App) error {
	q := ns.Spec.Quota
	if q == nil {
		return nil
	}
	// A template change starts a rollout, which may surge; so does one
	// under way or paused (a scale of it grows the surge too).
	surging := use.rolling || prev != nil && prev.Spec.Template.Hash() != a.Spec.Template.Hash()
	cpu, mem, inst := appFootprint(a, surging, use.running)
	// A change is refused on a resource only if it asks for more of it
	// than the App holds now: a namespace left over a quota lowered
	// under it can still scale down or shrink, as in Kubernetes.
	var heldCPU v1.CPU
	var heldMem v1.Bytes
	heldInst := 0
	if prev != nil {
		heldCPU, heldMem, heldInst = appFootprint(prev, use.rolling, use.running)
	}
	name := ns.Metadata.Name
	switch {
	case q.Apps > 0 && prev == nil && use.apps+1 > q.Apps:
		return &QuotaError{name, "apps", fmt.Sprint(use.apps), "1", fmt.Sprint(q.Apps)}
	case q.Instances > 0 && inst > heldInst && use.instances+inst > q.Instances:
		return &QuotaError{name, "instances", fmt.Sprint(use.instances), fmt.Sprint(inst) + surgeNote(surging), fmt.Sprint(q.Instances)}
	case q.CPU > 0 && cpu > heldCPU && satAdd(int64(use.cpu), int64(cpu)) > int64(q.CPU):
		return &QuotaError{name, "cpu", use.cpu.String(), cpu.String() + surgeNote(surging), q.CPU.String()}
	case q.Memory > 0 && mem > heldMem && satAdd(int64(use.mem), int64(mem)) > int64(q.Memory):
		return &QuotaError{name, "memory", use.mem.String(), mem.String() + surgeNote(surging), q.Memory.String()}
	}
	return nil
}

// quotaLocks serializes, per namespace, the writes that a quota counts:
// the check lists what the namespace uses and the write follows, and two
// writers interleaved so would each see room for one more and both be
// admitted. A lock in the process suffices because one API server
// serves the cluster; namespaces without a quota take none, so that
// their writes stay concurrent.
type quotaLocks struct {
	locks keylock.Locks // by namespace
}

// hold locks ns's quota if it has one, and returns the unlock.
func (q *quotaLocks) hold(ns *v1.Namespace) func() {
	if ns == nil || ns.Spec.Quota == nil {
		return func() {}
	}
	return q.locks.Lock(ns.Metadata.Name)
}

// HoldQuota locks the quota of the namespace named ns, if it has one,
// until the returned release is called: a check of the quota and the
// write it admits, made under it, are not interleaved with other such
// pairs (the autoscaler's scale-ups hold it too). An unknown namespace
// takes no lock (the write that follows refuses it).
func (s *Server) HoldQuota(ctx context.Context, ns string) func() {
	_, release := s.holdQuota(ctx, ns)
	return release
}

// holdQuota is HoldQuota that also returns the namespace as it read it,
// from the store, not the cache: a quota set a moment ago, which the
// cache may not have yet, is held and judged by (nil when it could not be
// read; the write's own read then refuses it).
func (s *Server) holdQuota(ctx context.Context, name string) (*v1.Namespace, func()) {
	n, err := store.Get[*v1.Namespace](ctx, s.store, "", name)
	if err != nil {
		return nil, func() {}
	}
	release := s.quotaLocks.hold(n)
	if n.Spec.Quota == nil {
		return n, release
	}
	// Read again once held: the quota may have changed while another
	// write held the lock.
	if again, err := store.Get[*v1.Namespace](ctx, s.store, "", name); err == nil {
		n = again
	}
	return n, release
}

func surgeNote(surging bool) string {
	if surging {
		return " (including rollout surge)"
	}
	return ""
}

// FitReplicas returns the largest replica count up to want that the App's
// namespace quota allows (the autoscaler asks before scaling up).
func (s *Server) FitReplicas(ctx context.Context, a *v1.App, want int32) (int32, error) {
	ns, err := store.Get[*v1.Namespace](ctx, s.store, "", a.Metadata.Namespace)
	if err != nil {
		return 0, err
	}
	cur := a.DesiredReplicas()
	if want <= cur || checkLimits(ns, a) != nil {
		return cur, nil
	}
	if ns.Spec.Quota == nil {
		return want, nil
	}
	// One listing for every count tried (the quota lock is held).
	use, err := s.namespaceUse(ctx, ns.Metadata.Name, a.Metadata.Name)
	if err != nil {
		return 0, err
	}
	for n := want; n > cur; n-- {
		trial := *a
		trial.Status.AutoscaleReplicas = n
		if quotaAllows(ns, use, &trial, a) == nil {
			return n, nil
		}
	}
	return cur, nil
}

// WithEvents lets the server record events (quota denials).
func WithEvents(r EventRecorder) Option { return func(s *Server) { s.events = r } }

// EventRecorder records events about objects.
type EventRecorder interface {
	Record(ctx context.Context, ns string, ref v1.ObjectRef, eventType, reason, message string)
}

// quotaDenied records that an App was refused for quota, so that the
// refusal shows in `gantry events` and reaches notifiers.
func (s *Server) quotaDenied(ctx context.Context, a *v1.App, err error) {
	if s.events == nil {
		return
	}
	s.events.Record(ctx, a.Metadata.Namespace, v1.ObjectRef{Kind: "App", Name: a.Metadata.Name}, v1.EventWarning, "QuotaDenied", err.Error())
}
