package ingress

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	retries       *prometheus.CounterVec
	connectErrors *prometheus.CounterVec
	ejections     *prometheus.CounterVec
	unrouted      prometheus.Counter
	tcpFlows      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	app := []string{"namespace", "app"}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_ingress_requests_total",
			Help: "HTTP requests proxied to an app, by status class (code_class 2xx, 5xx, ...; \"other\" for a status outside 100-599).",
		}, []string{"namespace", "app", "code_class"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gantry_ingress_request_duration_seconds",
			Help:    "Time from receiving a request to the end of its response, through the ingress.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, app),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_ingress_retries_total",
			Help: "Requests sent to a second instance after a connect error.",
		}, app),
		connectErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_ingress_connect_errors_total",
			Help: "Failed connects to an app's instances (HTTP and TCP).",
		}, app),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_ingress_ejections_total",
			Help: "Times an instance was ejected after consecutive connect failures.",
		}, app),
		unrouted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gantry_ingress_unrouted_requests_total",
			Help: "Requests for a host and path that no app routes (answered 404).",
		}),
		tcpFlows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_ingress_tcp_connections_total",
			Help: "TCP connections accepted on node ports of exposed app ports.",
		}, []string{"namespace", "app", "port"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.duration, m.retries, m.connectErrors, m.ejections, m.unrouted, m.tcpFlows} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("ingress: register metrics: %w", err)
			}
		}
	}
	return m, nil
}

// appStats is the per-App accounting. It is resolved once per table build
// so the request path does no label lookups.
type appStats struct {
	ns, name string
	key      string

	byClass       [6]prometheus.Counter // index status/100; 0 for anything odd
	duration      prometheus.Observer
	retries       prometheus.Counter
	connectErrors prometheus.Counter
	ejections     prometheus.Counter

	total atomic.Uint64

	mu      sync.Mutex
	samples []rateSample // oldest first
}

type rateSample struct {
	at time.Time
	n  uint64
}

func (m *metrics) newAppStats(ns, name string) *appStats {
	a := &appStats{ns: ns, name: name, key: ns + "/" + name}
	for i, class := range []string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"} {
		a.byClass[i] = m.requests.WithLabelValues(ns, name, class)
	}
	a.duration = m.duration.WithLabelValues(ns, name)
	a.retries = m.retries.WithLabelValues(ns, name)
	a.connectErrors = m.connectErrors.WithLabelValues(ns, name)
	a.ejections = m.ejections.WithLabelValues(ns, name)
	return a
}

// forget drops the app's series once it is gone from the snapshot, so a
// cluster with churning apps does not grow its exposition forever.
func (m *metrics) forget(a *appStats) {
	for _, class := range []string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"} {
		m.requests.DeleteLabelValues(a.ns, a.name, class)
	}
	m.duration.DeleteLabelValues(a.ns, a.name)
	m.retries.DeleteLabelValues(a.ns, a.name)
	m.connectErrors.DeleteLabelValues(a.ns, a.name)
	m.ejections.DeleteLabelValues(a.ns, a.name)
	m.tcpFlows.DeletePartialMatch(prometheus.Labels{"namespace": a.ns, "app": a.name})
}

func (a *appStats) observe(status int, d time.Duration) {
	class := status / 100
	if class < 1 || class > 5 {
		class = 0
	}
	a.byClass[class].Inc()
	a.duration.Observe(d.Seconds())
	a.total.Add(1)
}

// sample records the request total; called about once a second.
func (a *appStats) sample(now time.Time, window time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.samples = append(a.samples, rateSample{at: now, n: a.total.Load()})
	// Keep one sample at least a window old, so the rate always spans the
	// whole window once there is enough history.
	for len(a.samples) > 2 && now.Sub(a.samples[1].at) >= window {
		a.samples = a.samples[1:]
	}
}

// rate is requests per second over the window.
func (a *appStats) rate(now time.Time) float64 {
	n := a.total.Load()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.samples) == 0 {
		return 0
	}
	s := a.samples[0]
	el := now.Sub(s.at).Seconds()
	if el < 0.5 {
		return 0
	}
	return float64(n-s.n) / el
}
