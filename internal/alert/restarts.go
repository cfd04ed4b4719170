package alert

import (
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/metrics"
)

// observation is an instance's cumulative restart count at a time.
type observation struct {
	t time.Time
	n int
}

// restartLog remembers the restart counts the evaluator saw in instance
// statuses. The agent writes a restart into the status as it happens,
// which is sooner than the next metrics sample and survives a gap in
// sampling; the window in turn remembers counts from before the
// evaluator first looked.
type restartLog struct {
	byKey map[string][]observation
}

// observe records the current counts of instances and forgets instances
// that are gone and observations older than keep (except the newest of
// those, which is the baseline of a window that starts after it).
func (l *restartLog) observe(now time.Time, instances []*v1.Instance, keep time.Duration) {
	if l.byKey == nil {
		l.byKey = map[string][]observation{}
	}
	live := make(map[string]bool, len(instances))
	cutoff := now.Add(-keep)
	for _, i := range instances {
		key := i.Metadata.Key()
		live[key] = true
		obs := l.byKey[key]
		if len(obs) == 0 || obs[len(obs)-1].n != i.Status.Restarts {
			obs = append(obs, observation{t: now, n: i.Status.Restarts})
		}
		drop := 0
		for drop+1 < len(obs) && obs[drop+1].t.Before(cutoff) {
			drop++
		}
		l.byKey[key] = obs[drop:]
	}
	for key := range l.byKey {
		if !live[key] {
			delete(l.byKey, key)
		}
	}
}

// increase returns how much i's restarts grew in the d before now, from
// the evaluator's own observations and the metrics window's samples, and
// whether the count at the start of that time is known (an observation
// from then, or an instance created since). When it is not (the
// evaluator started within d, and the window has no sample from then),
// the increase is counted from the lowest count seen, which may fall
// short of the true one, never exceed it.
func (l *restartLog) increase(w *metrics.Window, now time.Time, i *v1.Instance, d time.Duration) (int, bool) {
	start := now.Add(-d)
	obs := append([]observation(nil), l.byKey[i.Metadata.Key()]...)
	obs = append(obs, observation{t: now, n: i.Status.Restarts})
	if w != nil {
		// Look a little before the window for the sample that gives
		// its starting count.
		lookback := max(3*w.InstanceInterval(i.Metadata.Namespace, i.Metadata.Name), time.Minute)
		for _, p := range w.Instance(i.Metadata.Namespace, i.Metadata.Name, start.Add(-lookback)) {
			if !p.Time.After(now) {
				obs = append(obs, observation{t: p.Time, n: p.Restarts})
			}
		}
	}
	// The baseline is the count at the start of the window: the newest
	// observation at or before it; zero for an instance created inside
	// the window; otherwise the lowest count seen inside it.
	var base observation
	haveBase := false
	for _, o := range obs {
		if !o.t.After(start) && (!haveBase || o.t.After(base.t)) {
			base, haveBase = o, true
		}
	}
	baseline := base.n
	known := haveBase
	if !haveBase {
		if !i.Metadata.Created.IsZero() && !i.Metadata.Created.Before(start) {
			baseline, known = 0, true
		} else {
			baseline = -1
			for _, o := range obs {
				if baseline < 0 || o.n < baseline {
					baseline = o.n
				}
			}
		}
	}
	current := 0
	for _, o := range obs {
		if o.t.After(start) || o.t.Equal(start) {
			current = max(current, o.n)
		}
	}
	return max(current-baseline, 0), known
}
