package notify

import "github.com/prometheus/client_golang/prometheus"

// Delivery results, the values of the result label.
const (
	ResultDelivered = "delivered" // a 2xx answer
	ResultRetried   = "retried"   // one failed attempt that will be retried
	ResultFailed    = "failed"    // given up: attempts exhausted or a permanent error
	ResultRefused   = "refused"   // the SSRF guard refused the target
	ResultDropped   = "dropped"   // a full queue or an unknown notifier
)

// Metrics are the notifier's Prometheus metrics.
type Metrics struct {
	// Notifications counts delivery outcomes by notifier type and result.
	Notifications *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "gantry", Name: "notifications_total",
			Help: "Notification delivery outcomes by notifier type (webhook, slack) and result (delivered, retried, failed, refused, dropped).",
		}, []string{"type", "result"}),
	}
	if reg != nil {
		reg.MustRegister(m.Notifications)
	}
	return m
}

func (m *Metrics) count(typ, result string) {
	if m == nil {
		return
	}
	if typ == "" {
		typ = "unknown"
	}
	m.Notifications.WithLabelValues(typ, result).Inc()
}
