package alert

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the evaluator's Prometheus metrics.
type Metrics struct {
	// Firing is 1 for each rule that is firing and 0 for each other rule.
	Firing *prometheus.GaugeVec
	// Evaluations counts evaluation passes by result (ok, error).
	Evaluations *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Firing: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "gantry", Name: "alerts_firing",
			Help: "Whether an alert rule is firing (1) or not (0), by namespace and rule.",
		}, []string{"namespace", "rule"}),
		Evaluations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "gantry", Name: "alert_evaluations_total",
			Help: "Alert evaluation passes over all rules, by result (ok, error).",
		}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.Firing, m.Evaluations)
	}
	return m
}
