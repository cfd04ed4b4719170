package alert

import (
	"fmt"
	"sort"
	"strings"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/metrics"
)

// finding is what one evaluation of a rule's condition saw.
type finding struct {
	// subjects the condition holds for, sorted ("instance/web-x7k2p");
	// empty means the condition does not hold.
	subjects []string
	// value is the measure of the worst subject (or of all, when no
	// subject qualifies): percent, restarts, missing instances, nodes.
	value   float64
	message string
	// app is the one App the subjects belong to, if there is one.
	app string
	// unknown counts the instances the condition could not be judged
	// for (no usage sample, or no restart count from the start of the
	// rule's window) and did not hold for on what was known.
	unknown int
}

func (f finding) holds() bool { return len(f.subjects) > 0 }

// snapshot is the state one evaluation pass reads.
type snapshot struct {
	now       time.Time
	window    *metrics.Window
	instances []*v1.Instance
	apps      []*v1.App
	nodes     []*v1.Node
	// increase returns how much an instance's restarts grew within d,
	// and whether the count at the start of d is known.
	increase func(i *v1.Instance, d time.Duration) (int, bool)
}

// measured is one subject's measure.
type measured struct {
	subject string
	name    string
	app     string
	value   float64
	// capped says a cpu rule measured it against a CPU limit, not its
	// request (it has no limit).
	capped bool
}

// check evaluates a rule's condition.
func check(r *v1.AlertRule, s *snapshot) finding {
	switch r.Spec.Condition {
	case v1.AlertCPU, v1.AlertMemory, v1.AlertRestarts:
		return checkInstances(r, s)
	case v1.AlertNotReady:
		return checkApps(r, s)
	case v1.AlertNodeNotReady:
		return checkNodes(s)
	}
	return finding{}
}

func (s *snapshot) ruleInstances(r *v1.AlertRule) []*v1.Instance {
	var out []*v1.Instance
	for _, i := range s.instances {
		if i.Metadata.Namespace != r.Metadata.Namespace || i.Metadata.Deleting != nil {
			continue
		}
		if r.Spec.App != "" && i.Spec.App != r.Spec.App {
			continue
		}
		out = append(out, i)
	}
	return out
}

// minFresh is the least time an instance's newest sample counts for.
const minFresh = 30 * time.Second

// fresh is how old an instance's newest sample may be and still count:
// an instance that stopped reporting is not using anything now. It is
// three of the instance's sampling intervals, as its agent samples
// (--sample-interval), so that a slow agent's instances do not drop out
// between samples; at least minFresh.
func (s *snapshot) fresh(i *v1.Instance) time.Duration {
	if s.window == nil {
		return 0
	}
	return max(3*s.window.InstanceInterval(i.Metadata.Namespace, i.Metadata.Name), minFresh)
}

// instanceValue measures one instance for a cpu, memory or restarts rule:
// ok is false when there is no measure, and partial when the measure may
// fall short (a restart increase from an unknown starting count).
func (s *snapshot) instanceValue(r *v1.AlertRule, i *v1.Instance) (v float64, ok, partial bool) {
	if r.Spec.Condition == v1.AlertRestarts {
		n, known := s.increase(i, r.Spec.Window.D())
		return float64(n), true, !known
	}
	v, ok = s.usage(r, i)
	return v, ok, false
}

// usage measures one instance for a cpu or memory rule.
func (s *snapshot) usage(r *v1.AlertRule, i *v1.Instance) (float64, bool) {
	if s.window == nil {
		return 0, false
	}
	smp, ok := s.window.InstanceLatest(i.Metadata.Namespace, i.Metadata.Name)
	if !ok || s.now.Sub(smp.Time) > s.fresh(i) {
		return 0, false
	}
	if r.Spec.Condition == v1.AlertCPU {
		if smp.CPULimit <= 0 || smp.CPUUnknown {
			// Unknown CPU (no rate yet) is no measure, not 0 %: it must
			// not resolve a firing rule.
			return 0, false
		}
		return smp.CPU / smp.CPULimit * 100, true
	}
	if smp.MemoryLimit <= 0 {
		return 0, false
	}
	return float64(smp.Memory) / float64(smp.MemoryLimit) * 100, true
}

func checkInstances(r *v1.AlertRule, s *snapshot) finding {
	var over []measured
	var worst float64
	unknown := 0
	for _, i := range s.ruleInstances(r) {
		v, ok, partial := s.instanceValue(r, i)
		if !ok {
			unknown++
			continue
		}
		worst = max(worst, v)
		// Usage must exceed its threshold; restarts reach theirs.
		hit := v > r.Spec.Threshold
		if r.Spec.Condition == v1.AlertRestarts {
			hit = v >= r.Spec.Threshold
		}
		switch {
		case hit:
			over = append(over, measured{subject: "instance/" + i.Metadata.Name, name: i.Metadata.Name, app: i.Spec.App, value: v,
				capped: i.Spec.Template.Resources.CPULimit() > 0})
		case partial:
			unknown++
		}
	}
	f := finding{value: round(worst), unknown: unknown}
	if len(over) == 0 {
		return f
	}
	sort.Slice(over, func(a, b int) bool {
		if over[a].value != over[b].value {
			return over[a].value > over[b].value
		}
		return over[a].name < over[b].name
	})
	top := over[0]
	f.app = oneApp(over)
	if r.Spec.App != "" {
		f.app = r.Spec.App
	}
	f.value = round(top.value)
	for _, o := range over {
		f.subjects = append(f.subjects, o.subject)
	}
	sort.Strings(f.subjects)
	switch r.Spec.Condition {
	case v1.AlertRestarts:
		if len(over) == 1 {
			f.message = fmt.Sprintf("instance %s restarted %s in %s (threshold %g)", top.name, times(int(top.value)), r.Spec.Window, r.Spec.Threshold)
		} else {
			f.message = fmt.Sprintf("%d instances restarted at least %s in %s; most: %s (%s)", len(over), times(int(r.Spec.Threshold)), r.Spec.Window, top.name, times(int(top.value)))
		}
	default:
		what, theirs := "memory limit", "memory limit"
		if r.Spec.Condition == v1.AlertCPU {
			// Without a limit, CPU is measured against the request.
			what, theirs = cpuBase(top.capped), cpuBase(top.capped)
			for _, o := range over {
				if o.capped != top.capped {
					theirs = "CPU limit (or request, without one)"
				}
			}
		}
		if len(over) == 1 {
			f.message = fmt.Sprintf("instance %s uses %.0f%% of its %s (threshold %g%%)", top.name, top.value, what, r.Spec.Threshold)
		} else {
			f.message = fmt.Sprintf("%d instances use more than %g%% of their %s; highest: %s at %.0f%%", len(over), r.Spec.Threshold, theirs, top.name, top.value)
		}
	}
	return f
}

func checkApps(r *v1.AlertRule, s *snapshot) finding {
	ready := map[string]int{}
	for _, i := range s.ruleInstances(r) {
		// An instance of an App whose work ends (restart policy never
		// or on-failure) that has done it is not missing.
		if i.Status.Ready || i.Status.Phase == v1.PhaseSucceeded {
			ready[i.Spec.App]++
		}
	}
	type shortfall struct {
		name       string
		have, want int
	}
	var short []shortfall
	var missing int
	for _, a := range s.apps {
		if a.Metadata.Namespace != r.Metadata.Namespace || a.Metadata.Deleting != nil {
			continue
		}
		if r.Spec.App != "" && a.Metadata.Name != r.Spec.App {
			continue
		}
		want, have := int(a.DesiredReplicas()), ready[a.Metadata.Name]
		if want <= 0 || have >= want {
			continue
		}
		missing += want - have
		short = append(short, shortfall{a.Metadata.Name, have, want})
	}
	if len(short) == 0 {
		return finding{}
	}
	sort.Slice(short, func(i, j int) bool { return short[i].name < short[j].name })
	f := finding{value: float64(missing)}
	var parts []string
	for _, a := range short {
		f.subjects = append(f.subjects, "app/"+a.name)
		parts = append(parts, fmt.Sprintf("%s (%d/%d)", a.name, a.have, a.want))
	}
	if len(short) == 1 {
		a := short[0]
		f.app = a.name
		f.message = fmt.Sprintf("app %s has %d of %d instances ready", a.name, a.have, a.want)
	} else {
		f.message = fmt.Sprintf("%d apps are not fully ready: %s", len(short), strings.Join(parts, ", "))
	}
	return f
}

func checkNodes(s *snapshot) finding {
	var names []string
	var why string
	for _, n := range s.nodes {
		if n.Status.Ready {
			continue
		}
		names = append(names, n.Metadata.Name)
		if len(names) == 1 && n.Status.Message != "" {
			why = ": " + n.Status.Message
		}
	}
	if len(names) == 0 {
		return finding{}
	}
	sort.Strings(names)
	f := finding{value: float64(len(names))}
	for _, n := range names {
		f.subjects = append(f.subjects, "node/"+n)
	}
	if len(names) == 1 {
		f.message = fmt.Sprintf("node %s is NotReady%s", names[0], why)
	} else {
		f.message = fmt.Sprintf("%d nodes are NotReady: %s", len(names), strings.Join(names, ", "))
	}
	return f
}

// oneApp returns the App every measure belongs to, or "".
func oneApp(ms []measured) string {
	if len(ms) == 0 {
		return ""
	}
	app := ms[0].app
	for _, m := range ms[1:] {
		if m.app != app {
			return ""
		}
	}
	return app
}

// subjectsApp returns the App every one of subjects (a status's, in
// namespace ns) belongs to, or "": an app's own, an instance's from the
// instance or, once it is gone, from its metrics series.
func (s *snapshot) subjectsApp(ns string, subjects []string) string {
	app := ""
	for i, subj := range subjects {
		kind, name, _ := strings.Cut(subj, "/")
		var a string
		switch kind {
		case "app":
			a = name
		case "instance":
			a = s.instanceApp(ns, name)
		}
		if a == "" || (i > 0 && a != app) {
			return ""
		}
		app = a
	}
	return app
}

// instanceApp returns the App of instance ns/name, or "" if unknown.
func (s *snapshot) instanceApp(ns, name string) string {
	for _, i := range s.instances {
		if i.Metadata.Namespace == ns && i.Metadata.Name == name {
			return i.Spec.App
		}
	}
	if s.window != nil {
		if smp, ok := s.window.InstanceLatest(ns, name); ok {
			return smp.App
		}
	}
	return ""
}

func times(n int) string {
	if n == 1 {
		return "once"
	}
	return fmt.Sprintf("%d times", n)
}

// round keeps one decimal: enough for a percentage, and it keeps status
// writes from chasing noise.
func round(v float64) float64 {
	return float64(int64(v*10+0.5)) / 10
}

// cpuBase names what a cpu rule measured an instance against.
func cpuBase(capped bool) string {
	if capped {
		return "CPU limit"
	}
	return "CPU request"
}
