package scheduler

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the scheduler's Prometheus instruments. The zero value is not
// usable; make one with NewMetrics.
type Metrics struct {
	// Attempts counts placement attempts by result: "scheduled" (bound),
	// "unschedulable" (no node fits), "conflict" (the instance changed
	// or was bound by someone else while we wrote), "error" (the store
	// failed).
	Attempts *prometheus.CounterVec
	// PlaceSeconds is how long the pure placement (filter, score, pick)
	// took per attempt.
	PlaceSeconds prometheus.Histogram
	// BindSeconds is the time from the attempt that succeeded to the
	// bind being committed: the latency the scheduler adds to a deploy.
	BindSeconds prometheus.Histogram
	// PendingSeconds is how long a bound instance waited from when the
	// scheduler first saw it pending, including time spent unschedulable.
	PendingSeconds prometheus.Histogram
	// Pending is how many instances wait for a node.
	Pending prometheus.Gauge
}

// NewMetrics makes the scheduler's metrics and registers them with reg,
// unless reg is nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "gantry", Subsystem: "scheduler", Name: "attempts_total",
			Help: "Placement attempts by result: scheduled, unschedulable, conflict, error.",
		}, []string{"result"}),
		PlaceSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "gantry", Subsystem: "scheduler", Name: "place_duration_seconds",
			Help:    "Time to filter and score nodes for one instance.",
			Buckets: prometheus.ExponentialBuckets(5e-6, 2, 16), // 5µs to ~160ms
		}),
		BindSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "gantry", Subsystem: "scheduler", Name: "bind_duration_seconds",
			Help:    "Time from a successful placement attempt to its bind being committed.",
			Buckets: prometheus.ExponentialBuckets(1e-4, 2, 16), // 100µs to ~3s
		}),
		PendingSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "gantry", Subsystem: "scheduler", Name: "pending_duration_seconds",
			Help:    "Time from an instance first seen pending to it being bound.",
			Buckets: prometheus.ExponentialBuckets(1e-3, 4, 12), // 1ms to ~70min
		}),
		Pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "gantry", Subsystem: "scheduler", Name: "pending_instances",
			Help: "Instances waiting for a node.",
		}),
	}
	for _, r := range []string{resultScheduled, resultUnschedulable, resultConflict, resultError} {
		m.Attempts.WithLabelValues(r) // export zeros, so rates work from the start
	}
	if reg != nil {
		reg.MustRegister(m.Attempts, m.PlaceSeconds, m.BindSeconds, m.PendingSeconds, m.Pending)
	}
	return m
}

const (
	resultScheduled     = "scheduled"
	resultUnschedulable = "unschedulable"
	resultConflict      = "conflict"
	resultError         = "error"
)
