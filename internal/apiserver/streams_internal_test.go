package apiserver

import (
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// A log follow or an exec session lasts as long as its client wants; its
// duration in gantry_api_request_duration_seconds put a 7 s `gantry logs
// -f` in the +Inf bucket, and a p99 latency alert fired whenever someone
// followed logs (review helper-160). Watches were left out already.
func TestStreamsAreNotLatencies(t *testing.T) {
	for _, tc := range []struct {
		url  string
		ri   *requestInfo
		want bool
	}{
		{"/api/v1/namespaces/default/apps?watch=true", &requestInfo{Verb: "watch"}, true},
		{"/api/v1/namespaces/default/apps/web/logs?follow=true", &requestInfo{Verb: "get", Sub: "logs"}, true},
		{"/api/v1/namespaces/default/instances/web-x/logs?follow=1", &requestInfo{Verb: "get", Sub: "logs"}, true},
		{"/api/v1/namespaces/default/instances/web-x/exec", &requestInfo{Verb: "create", Sub: "exec"}, true},
		{"/api/v1/namespaces/default/apps/web/logs?tail=10", &requestInfo{Verb: "get", Sub: "logs"}, false},
		{"/api/v1/namespaces/default/apps/web/logs?follow=false", &requestInfo{Verb: "get", Sub: "logs"}, false},
		{"/api/v1/namespaces/default/apps/web", &requestInfo{Verb: "get"}, false},
		{"/api/v1/nope", nil, false},
	} {
		r := httptest.NewRequest("GET", tc.url, nil)
		if got := streams(r, tc.ri); got != tc.want {
			t.Errorf("streams(%s, %+v) = %v, want %v", tc.url, tc.ri, got, tc.want)
		}
	}
	m := newAPIMetrics()
	m.observe("apps/logs", "get", 200, 0, true)
	m.observe("apps/logs", "get", 200, 0, false)
	var h dto.Metric
	if err := m.latency.WithLabelValues("apps/logs", "get").(prometheus.Histogram).Write(&h); err != nil {
		t.Fatal(err)
	}
	if n := h.GetHistogram().GetSampleCount(); n != 1 {
		t.Errorf("latency observations = %d after one stream and one request, want 1", n)
	}
	var c dto.Metric
	if err := m.requests.WithLabelValues("apps/logs", "get", "200").Write(&c); err != nil {
		t.Fatal(err)
	}
	if n := c.GetCounter().GetValue(); n != 2 {
		t.Errorf("requests counted = %v, want 2 (streams count as requests)", n)
	}
}
