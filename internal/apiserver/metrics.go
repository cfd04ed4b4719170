package apiserver

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type apiMetrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newAPIMetrics() *apiMetrics {
	return &apiMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_api_requests_total",
			Help: "API requests by route, verb and HTTP status code (streams included: watches, log follows, exec).",
		}, []string{"route", "verb", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gantry_api_request_duration_seconds",
			Help:    "API request latency by route and verb (streams excluded: watches, log follows, exec).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route", "verb"}),
	}
}

// observe counts a request and, unless it was a stream, its latency.
func (m *apiMetrics) observe(route, verb string, code int, d time.Duration, stream bool) {
	m.requests.WithLabelValues(route, verb, strconv.Itoa(code)).Inc()
	if !stream {
		m.latency.WithLabelValues(route, verb).Observe(d.Seconds())
	}
}

// Collectors returns the server's Prometheus collectors for registration.
func (s *Server) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.metrics.requests, s.metrics.latency}
}
