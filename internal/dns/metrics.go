package dns

import (
	"errors"
	"fmt"

	miekg "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// The label values are a closed set so that a client sending random query
// types cannot blow up the number of series.
var (
	typeLabels = []struct {
		code  uint16
		label string
	}{
		{miekg.TypeA, "A"}, {miekg.TypeAAAA, "AAAA"}, {miekg.TypeSRV, "SRV"},
		{miekg.TypeSOA, "SOA"}, {miekg.TypeNS, "NS"}, {miekg.TypePTR, "PTR"},
		{miekg.TypeTXT, "TXT"}, {miekg.TypeMX, "MX"}, {miekg.TypeCNAME, "CNAME"},
		{miekg.TypeHTTPS, "HTTPS"}, {miekg.TypeANY, "ANY"},
	}
	rcodeLabels = []struct {
		code  int
		label string
	}{
		{miekg.RcodeSuccess, "NOERROR"}, {miekg.RcodeFormatError, "FORMERR"},
		{miekg.RcodeServerFailure, "SERVFAIL"}, {miekg.RcodeNameError, "NXDOMAIN"},
		{miekg.RcodeNotImplemented, "NOTIMP"}, {miekg.RcodeRefused, "REFUSED"},
	}
)

const otherLabel = "other"

// metrics are the server's Prometheus collectors. The per-query counters
// are resolved once, up front, so that counting a query is one atomic add
// rather than a label lookup on the hot path.
type metrics struct {
	queries       [][]prometheus.Counter // [type][rcode], last of each is "other"
	forwardOK     prometheus.Counter
	forwardFailed prometheus.Counter
	dropped       map[string]prometheus.Counter
	indexBuilds   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	queries := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gantry_dns_queries_total",
		Help: "DNS queries answered, by query type and response code.",
	}, []string{"type", "rcode"})
	forwards := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gantry_dns_forwards_total",
		Help: "Queries forwarded to upstream resolvers, by result (ok: an upstream answered; failed: every upstream failed).",
	}, []string{"result"})
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gantry_dns_dropped_total",
		Help: "Packets not answered normally, by reason (malformed: could not be parsed; response: a response sent to us).",
	}, []string{"reason"})
	builds := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "gantry_dns_index_builds_total",
		Help: "Service snapshots indexed for answering.",
	})
	if reg != nil {
		for _, c := range []prometheus.Collector{queries, forwards, dropped, builds} {
			if err := reg.Register(c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if errors.As(err, &are) {
					return nil, fmt.Errorf("dns: register metrics: another DNS server already uses this registry: %w", err)
				}
				return nil, fmt.Errorf("dns: register metrics: %w", err)
			}
		}
	}
	m := &metrics{
		forwardOK:     forwards.WithLabelValues("ok"),
		forwardFailed: forwards.WithLabelValues("failed"),
		dropped: map[string]prometheus.Counter{
			"malformed": dropped.WithLabelValues("malformed"),
			"response":  dropped.WithLabelValues("response"),
		},
		indexBuilds: builds,
	}
	tl := make([]string, 0, len(typeLabels)+1)
	for _, t := range typeLabels {
		tl = append(tl, t.label)
	}
	rl := make([]string, 0, len(rcodeLabels)+1)
	for _, r := range rcodeLabels {
		rl = append(rl, r.label)
	}
	tl, rl = append(tl, otherLabel), append(rl, otherLabel)
	m.queries = make([][]prometheus.Counter, len(tl))
	for i, t := range tl {
		m.queries[i] = make([]prometheus.Counter, len(rl))
		for j, r := range rl {
			m.queries[i][j] = queries.WithLabelValues(t, r)
		}
	}
	return m, nil
}

// countQuery counts one answered query.
func (m *metrics) countQuery(qtype uint16, rcode int) {
	ti := len(typeLabels)
	for i, t := range typeLabels {
		if t.code == qtype {
			ti = i
			break
		}
	}
	ri := len(rcodeLabels)
	for i, r := range rcodeLabels {
		if r.code == rcode {
			ri = i
			break
		}
	}
	m.queries[ti][ri].Inc()
}
