package controller

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/informer"
	"github.com/gantry-dev/gantry/internal/metrics"
	"github.com/gantry-dev/gantry/internal/store"
)

// RequestRater reports an App's ingress requests per second (the load
// balancer implements it).
type RequestRater interface {
	RequestRate(ns, app string) float64
}

// QuotaChecker says how many replicas of an App fit the namespace quota.
type QuotaChecker func(ctx context.Context, a *v1.App, replicas int32) (int32, error)

// Autoscaler sets the replica count of Apps that ask for it from their
// recent CPU use (and optionally ingress request rate), like Kubernetes'
// HPA: desired = ceil(measured × observed / target), within [min, max],
// where measured is the instances the newest metrics sample covered.
// Scaling up happens at once; scaling down only when every recommendation
// of the last DownStabilization agrees, so a dip does not flap.
type Autoscaler struct {
	Store    *store.Store
	Apps     *informer.Informer[*v1.App]
	Window   *metrics.Window
	Requests RequestRater
	Quota    QuotaChecker
	// HoldQuota, when set, serializes a scale-up with the other writes
	// the namespace's quota counts, from its check to its write; it
	// returns the release.
	HoldQuota func(ctx context.Context, namespace string) (release func())
	Recorder  Recorder
	Log       *slog.Logger
	// Interval is how often apps are evaluated (default 5s).
	Interval time.Duration
	// Lookback is how much recent history is averaged (default 30s).
	Lookback time.Duration
	// DownStabilization (default 60s) and Tolerance (default 0.1) keep
	// the count steady.
	DownStabilization time.Duration
	Tolerance         float64
	Now               func() time.Time

	mu sync.Mutex
	// recs holds each autoscaled App's recent recommendations, by UID
	// (an App created again under its name starts afresh); evaluateAll
	// drops those of Apps it no longer scales.
	recs map[string][]recommendation
	// capped holds, by App UID, the quota cap last announced (wanted,
	// allowed): the event is recorded when it changes, not at every
	// pass that meets it again.
	capped map[string][2]int32
}

type recommendation struct {
	at       time.Time
	replicas int32
}

// Run evaluates until ctx ends.
func (s *Autoscaler) Run(ctx context.Context) {
	if s.Interval == 0 {
		s.Interval = 5 * time.Second
	}
	if s.Lookback == 0 {
		s.Lookback = 30 * time.Second
	}
	if s.DownStabilization == 0 {
		s.DownStabilization = 60 * time.Second
	}
	if s.Tolerance == 0 {
		s.Tolerance = 0.1
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	s.recs = map[string][]recommendation{}
	select {
	case <-ctx.Done():
		return
	case <-s.Apps.Synced():
	}
	t := time.NewTicker(s.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.evaluateAll(ctx)
	}
}

// evaluateAll makes a decision for every App that asks for autoscaling,
// and forgets the recommendations of the others (deleted, or no longer
// autoscaled): an App that asks again starts afresh.
func (s *Autoscaler) evaluateAll(ctx context.Context) {
	scaled := map[string]bool{}
	for _, a := range s.Apps.List(func(a *v1.App) bool { return a.Spec.Autoscale != nil && a.Metadata.Deleting == nil }) {
		scaled[a.Metadata.UID] = true
		if err := s.evaluate(ctx, a); err != nil && ctx.Err() == nil {
			s.Log.Warn("autoscale", "app", a.Metadata.Key(), "err", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for uid := range s.recs {
		if !scaled[uid] {
			delete(s.recs, uid)
		}
	}
	for uid := range s.capped {
		if !scaled[uid] {
			delete(s.capped, uid)
		}
	}
}

// evaluate makes one decision for an App.
func (s *Autoscaler) evaluate(ctx context.Context, a *v1.App) error {
	as := a.Spec.Autoscale
	now := s.Now()
	current := a.DesiredReplicas()
	want, why, ok := s.recommend(a, current, now)
	if !ok {
		return nil
	}
	want = max(as.Min, min(as.Max, want))
	s.mu.Lock()
	uid := a.Metadata.UID
	recs := s.recs[uid]
	for len(recs) > 0 && now.Sub(recs[0].at) > s.DownStabilization {
		recs = recs[1:]
	}
	if len(recs) == 0 {
		// An App new to this autoscaler (it just started, or autoscale
		// was just set), or one it has had no metrics of for a whole
		// window: its current count stands for the window before, as in
		// Kubernetes' HPA, so one low reading cannot scale it down at
		// once.
		recs = []recommendation{{now, current}}
	}
	recs = append(recs, recommendation{now, want})
	s.recs[uid] = recs
	// Scale down only to the highest recommendation of the window, within
	// the App's bounds as they are now (a lowered max).
	if want < current {
		for _, r := range recs {
			want = max(want, r.replicas)
		}
		want = max(as.Min, min(as.Max, want))
	}
	s.mu.Unlock()
	// A rollout in progress is left alone except to reach min (an App
	// that is only scaling is Progressing too, but on its stable
	// revision).
	if a.Status.Phase == v1.AppProgressing && a.Status.Revision != a.Status.StableRevision && want > current && current >= as.Min {
		return nil
	}
	if want == current {
		return nil
	}
	if s.Quota != nil && want > current {
		if s.HoldQuota != nil {
			defer s.HoldQuota(ctx, a.Metadata.Namespace)()
		}
		fit, err := s.Quota(ctx, a, want)
		if err != nil {
			return err
		}
		if fit < want {
			s.mu.Lock()
			if s.capped == nil {
				s.capped = map[string][2]int32{}
			}
			news := s.capped[a.Metadata.UID] != [2]int32{want, fit}
			s.capped[a.Metadata.UID] = [2]int32{want, fit}
			s.mu.Unlock()
			if news {
				s.Recorder.Eventf(ctx, a, v1.EventWarning, "QuotaLimitsScaling", "autoscaler wanted %d replicas (%s) but the namespace quota allows %d", want, why, fit)
			}
			want = fit
		} else {
			s.mu.Lock()
			delete(s.capped, a.Metadata.UID)
			s.mu.Unlock()
		}
		if want <= current {
			return nil
		}
	}
	wrote := false
	out, err := store.Mutate(ctx, s.Store, a.Metadata.Namespace, a.Metadata.Name, func(x *v1.App) error {
		wrote = false // a retry after a conflict decides again
		// A scale-up was decided, and its quota checked, on the App as
		// the cache had it: one changed since (a larger template, a
		// rollout begun) is decided on afresh at the next pass.
		if x.Spec.Autoscale == nil || want > current && x.Metadata.Revision != a.Metadata.Revision {
			return store.ErrUnchanged
		}
		x.Status.AutoscaleReplicas = want
		x.Status.AutoscaleReason = why
		wrote = true
		return nil
	})
	if err != nil || !wrote {
		return err
	}
	s.Apps.Observe(out)
	s.Recorder.Eventf(ctx, a, v1.EventNormal, "Scaled", "autoscaler scaled from %d to %d replicas: %s", current, want, why)
	return nil
}

// recommend computes the replica count the metrics call for.
func (s *Autoscaler) recommend(a *v1.App, current int32, now time.Time) (int32, string, bool) {
	as := a.Spec.Autoscale
	var want int32
	var why string
	found := false
	if as.TargetCPUPercent > 0 && s.Window != nil {
		pts, _ := s.Window.App(a.Metadata.Namespace, a.Metadata.Name, now.Add(-s.Lookback))
		// Per instance, over the points taken at the newest point's
		// instance count: figures from before a scale-up, read against
		// the count after it, overshot (2 → 4 → 6 → 8 for a load that
		// 4 carry).
		// A point without a CPU measure says nothing of the load (its
		// CPU is 0, not idle).
		measures := func(p metrics.Point) bool { return p.Instances > 0 && !p.CPUUnknown }
		measured := 0 // the newest measuring point's instance count
		for _, p := range pts {
			if measures(p) {
				measured = p.Instances
			}
		}
		var cpu float64
		var n int
		for _, p := range pts {
			if !measures(p) || p.Instances != measured {
				continue
			}
			// Instances whose CPU is not known yet (just started)
			// carry none here, as the HPA takes them for a scale-up,
			// not the others' mean the point counts them at.
			known := p.CPU
			if p.CPUKnown > 0 && p.CPUKnown < p.Instances {
				known = p.CPU * float64(p.CPUKnown) / float64(p.Instances)
			}
			cpu += known / float64(p.Instances)
			n++
		}
		req := float64(a.Spec.Resources.CPU) / 1000
		if n > 0 && req > 0 {
			perInstance := cpu / float64(n)
			util := perInstance / req * 100
			ratio := util / float64(as.TargetCPUPercent)
			if math.Abs(ratio-1) > s.Tolerance {
				// Scaled from the instances the newest point measured,
				// not from the count asked for: right after a scale the
				// two differ, and the new instances carry no load yet.
				want = replicasFor(float64(measured) * ratio)
			} else {
				want = current
			}
			why = fmt.Sprintf("cpu at %.0f%% of requests, target %d%%", util, as.TargetCPUPercent)
			found = true
		}
	}
	if as.TargetRequestsPerSecond > 0 && s.Requests != nil {
		rps := s.Requests.RequestRate(a.Metadata.Namespace, a.Metadata.Name)
		perInstance := rps / float64(max(current, 1))
		ratio := perInstance / as.TargetRequestsPerSecond
		r := current
		if math.Abs(ratio-1) > s.Tolerance {
			r = replicasFor(rps / as.TargetRequestsPerSecond)
		}
		if !found || r > want {
			want = r
			why = fmt.Sprintf("%.1f requests/s per instance, target %.1f", perInstance, as.TargetRequestsPerSecond)
		}
		found = true
	}
	return want, why, found
}

// replicasFor rounds a replica count up, saturating at the largest int32:
// a huge ratio (a tiny target) is a scale to max, never a wrap to a
// negative count and so to min.
func replicasFor(x float64) int32 {
	switch {
	case math.IsNaN(x) || x <= 0:
		return 0
	case x >= math.MaxInt32:
		return math.MaxInt32
	}
	return int32(math.Ceil(x))
}
