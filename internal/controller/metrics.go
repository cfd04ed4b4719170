package controller

import (
	"github.com/prometheus/client_golang/prometheus"
)

// RolloutMetrics count rollouts by outcome and time them.
type RolloutMetrics struct {
	Total    *prometheus.CounterVec
	Duration *prometheus.HistogramVec
}

// NewRolloutMetrics makes the metrics and registers them with reg (when
// not nil).
func NewRolloutMetrics(reg prometheus.Registerer) *RolloutMetrics {
	m := &RolloutMetrics{
		Total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_rollouts_total",
			Help: "Rollouts that ended, by outcome: completed, rolled_back (progress deadline exceeded, previous revision restored) or failed (no earlier revision to return to).",
		}, []string{"outcome"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gantry_rollout_duration_seconds",
			Help:    "Time from a revision's rollout start to its end, by outcome.",
			Buckets: []float64{0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600},
		}, []string{"outcome"}),
	}
	if reg != nil {
		reg.MustRegister(m.Total, m.Duration)
	}
	return m
}
