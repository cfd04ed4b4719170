package ingress

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// Balancing policies.
const (
	RoundRobin    = v1.BalanceRoundRobin
	LeastRequests = v1.BalanceLeastRequests
)

// ErrNoTLSRoute is what Certificates answers for a host that routes serve
// but none with tls: a client's mistake, not a certificate to fix.
var ErrNoTLSRoute = errors.New("no route with tls serves this host")

// Certificates supplies the certificate for a TLS host. The ingress asks
// only for hosts it routes; under a wildcard route that is any name a
// client sends, so an implementation that issues certificates on demand
// (the built-in CA) must issue per route, not per name asked for.
type Certificates interface {
	GetCertificate(host string) (*tls.Certificate, error)
}

// Config configures a Proxy. The zero value is usable: unset fields take
// the defaults given with them.
type Config struct {
	// HTTPAddr is the plain HTTP (and h2c) listen address. Default ":8080".
	HTTPAddr string
	// HTTPSAddr is the TLS listen address; empty disables HTTPS.
	HTTPSAddr string
	// Certificates backs HTTPS. Required when HTTPSAddr is set.
	Certificates Certificates

	// AppsDomain gives every App with an http port the default host
	// APP.NAMESPACE.AppsDomain. Default "localhost", which resolves to
	// loopback without any DNS set-up.
	AppsDomain string

	// Balancer is RoundRobin (default) or LeastRequests.
	Balancer string

	// DialTimeout bounds a connect to an instance. Default 2s.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for an instance's response
	// headers once the request is written. Default 0: no limit, because
	// long polls are legitimate.
	ResponseHeaderTimeout time.Duration
	// MaxIdlePerEndpoint is the number of idle keep-alive connections kept
	// to each instance. Default 256.
	MaxIdlePerEndpoint int
	// UpstreamIdleTimeout closes upstream connections idle this long.
	// Default 60s.
	UpstreamIdleTimeout time.Duration
	// ClientIdleTimeout closes client keep-alive connections idle this
	// long. Default 120s.
	ClientIdleTimeout time.Duration
	// ClientBodyTimeout bounds each wait for more of a request body from
	// the client, as nginx's client_body_timeout does: the body streams
	// to the instance, so a client that trickles it would otherwise hold
	// a connection (and often a worker) of the instance for as long as it
	// likes. Such a request gets 408. Default 60s.
	ClientBodyTimeout time.Duration
	// ClientSendTimeout bounds each wait for a client to take more of a
	// response, as nginx's send_timeout does: the answer streams from
	// the instance, so a client that stops reading would otherwise hold
	// the instance's connection for as long as it likes. The response is
	// cut then (an HTTP/2 stream is reset). Time spent waiting for the
	// instance does not count. Default 60s.
	ClientSendTimeout time.Duration

	// EjectAfter is the number of consecutive connect failures after which
	// an instance gets no traffic for EjectFor. Defaults 3 and 10s.
	EjectAfter int
	EjectFor   time.Duration

	// TCPBindAddress is the IP that node ports of `expose: tcp` ports bind
	// to. Default "" (every address).
	TCPBindAddress string
	// OnNodePorts, when set, is called with every published node port,
	// by "namespace/app/port", after a snapshot changed them. It is
	// called with the load balancer's lock held: it must not block or
	// call back into the Proxy.
	OnNodePorts func(map[string]int)
	// NodePortMin and NodePortMax bound the node ports of exposed ports:
	// those allocated, and those asked for (a port outside is not
	// published). Defaults v1.NodePortMin and v1.NodePortMax, the range
	// validation admits.
	NodePortMin, NodePortMax int

	// TCPHalfCloseTimeout ends a relayed TCP flow whose one side has
	// finished sending when, for this long, the other sends nothing or
	// the finished side takes nothing of what it sends: a peer that
	// never closes its half, or never reads, would otherwise hold the
	// flow, and its node port's file descriptors, forever. The flow ends
	// within twice this of the last byte moved. Linux only (the kernel's
	// TCP counters tell progress). Default 60s.
	TCPHalfCloseTimeout time.Duration
	// MaxTCPFlows bounds the flows one exposed port relays at once, as
	// HAProxy's maxconn does: each holds two file descriptors of the
	// server process, which its API server and etcd share, and an idle
	// flow lasts as long as its two ends keep it. A connection beyond it
	// is closed at once. Default 10000.
	MaxTCPFlows int

	// ShutdownTimeout bounds how long in-flight requests and TCP flows may
	// run once the context of ListenAndServe ends. Default 10s.
	ShutdownTimeout time.Duration

	// AccessLog logs every request at Info level (method, host, path,
	// status, bytes, duration, app, instance, upstream). Default off.
	AccessLog bool

	// Registerer receives the ingress metrics; nil keeps them unregistered.
	Registerer prometheus.Registerer

	// RateWindow is the window over which RequestRate averages. Default 10s.
	RateWindow time.Duration
}

func (c Config) withDefaults() Config {
	if c.HTTPAddr == "" {
		c.HTTPAddr = ":8080"
	}
	if c.AppsDomain == "" {
		c.AppsDomain = "localhost"
	}
	c.AppsDomain = strings.Trim(strings.ToLower(c.AppsDomain), ".")
	if c.Balancer == "" {
		c.Balancer = RoundRobin
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 2 * time.Second
	}
	if c.MaxIdlePerEndpoint <= 0 {
		c.MaxIdlePerEndpoint = 256
	}
	if c.UpstreamIdleTimeout <= 0 {
		c.UpstreamIdleTimeout = 60 * time.Second
	}
	if c.ClientIdleTimeout <= 0 {
		c.ClientIdleTimeout = 120 * time.Second
	}
	if c.ClientSendTimeout <= 0 {
		c.ClientSendTimeout = 60 * time.Second
	}
	if c.ClientBodyTimeout <= 0 {
		c.ClientBodyTimeout = 60 * time.Second
	}
	if c.EjectAfter <= 0 {
		c.EjectAfter = 3
	}
	if c.EjectFor <= 0 {
		c.EjectFor = 10 * time.Second
	}
	if c.NodePortMin == 0 && c.NodePortMax == 0 {
		c.NodePortMin, c.NodePortMax = v1.NodePortMin, v1.NodePortMax
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 10 * time.Second
	}
	if c.MaxTCPFlows <= 0 {
		c.MaxTCPFlows = 10000
	}
	if c.TCPHalfCloseTimeout <= 0 {
		c.TCPHalfCloseTimeout = 60 * time.Second
	}
	if c.RateWindow <= 0 {
		c.RateWindow = 10 * time.Second
	}
	return c
}

func (c Config) validate() error {
	switch c.Balancer {
	case RoundRobin, LeastRequests:
	default:
		return fmt.Errorf("ingress: balancer must be %q or %q (got %q)", RoundRobin, LeastRequests, c.Balancer)
	}
	if c.HTTPSAddr != "" && c.Certificates == nil {
		return fmt.Errorf("ingress: HTTPSAddr %q needs a Certificates source", c.HTTPSAddr)
	}
	if c.NodePortMin < 1 || c.NodePortMax > 65535 || c.NodePortMin > c.NodePortMax {
		return fmt.Errorf("ingress: node port range %d-%d is not within 1-65535", c.NodePortMin, c.NodePortMax)
	}
	return nil
}
