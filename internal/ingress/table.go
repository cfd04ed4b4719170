package ingress

import (
	"bytes"
	"net"
	"sort"
	"strconv"
	"strings"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/discovery"
)

// table is the immutable routing state built from one snapshot. Requests
// load it once through an atomic pointer; a new snapshot builds a new one.
type table struct {
	revision int64
	hosts    map[string]*hostRoutes // exact host
	wild     map[string]*hostRoutes // "*.example.com" stored as "example.com"
	// backends are every App port's endpoint sets by key: namespace/app/port
	// for HTTP, tcpKeyPrefix + the same for exposed TCP ports. Retries and
	// TCP accepts look up the newest set here.
	backends map[string]*backend
	// noHTTP holds the default hosts of Apps that have no http port,
	// which the load balancer does not serve: a 404 for one says why.
	noHTTP map[string]bool
}

type hostRoutes struct {
	routes []*route // longest path first
}

type route struct {
	host     string
	path     string // "/" or a clean prefix without a trailing slash
	backend  *backend
	explicit bool // from spec.routes, not the default host
	// toHTTPS sends plain HTTP requests to HTTPS: the route has TLS
	// and does not allow HTTP.
	toHTTPS bool
}

// pathMatches reports whether prefix covers p on a segment boundary:
// "/api" covers "/api" and "/api/x" but not "/apix". A ';' ends a segment's
// name too: servlet containers read "/api;jsessionid=1" as "/api", so the
// App routed at "/api" must be the one that gets it.
func pathMatches(prefix, p string) bool {
	if prefix == "/" {
		return true
	}
	if !strings.HasPrefix(p, prefix) {
		return false
	}
	return len(p) == len(prefix) || p[len(prefix)] == '/' || p[len(prefix)] == ';'
}

// cleanRequestPath returns the path a request is routed by and sent on
// with: its dot-segments ("." and "..") resolved and empty segments
// ("//") merged, as RFC 3986 and nginx do before matching a location. An
// instance resolves them too, so matching the path as sent would let
// "/api/../admin" through a route for "/api" to the App's "/admin". p is
// the decoded path, so "%2e%2e" and "%2F" count as ".." and "/" here; an
// instance that decodes less sees a path that is at worst inside the
// route. ok is false for a segment that some servers read as a
// dot-segment and others do not ("..;x" in a servlet container, "..\"
// on Windows): no route can be chosen for it that every instance agrees
// with. A path that needs no change is returned as it is, without
// allocating.
func cleanRequestPath(p string) (clean string, ok bool) {
	if p == "" || p[0] != '/' {
		return p, true // "*" (OPTIONS) or empty: nothing to resolve
	}
	dirty := false
	for i := 0; i < len(p); {
		j, odd := i+1, false
		for ; j < len(p) && p[j] != '/'; j++ {
			if c := p[j]; c == ';' || c == '\\' {
				odd = true
			}
		}
		switch seg := p[i+1 : j]; {
		case seg == "" && j < len(p), seg == ".", seg == "..":
			dirty = true
		case odd && hidesDotSegment(seg):
			return "", false
		}
		i = j
	}
	if !dirty {
		return p, true
	}
	out := make([]byte, 0, len(p))
	for i := 0; i < len(p); {
		j := i + 1
		for j < len(p) && p[j] != '/' {
			j++
		}
		seg, last := p[i+1:j], j == len(p)
		switch seg {
		case "", ".":
		case "..":
			if k := bytes.LastIndexByte(out, '/'); k >= 0 {
				out = out[:k]
			}
		default:
			out = append(out, '/')
			out = append(out, seg...)
		}
		// A path that named a directory still does: "/a/b/.." is "/a/".
		if last && (seg == "" || seg == "." || seg == "..") {
			out = append(out, '/')
		}
		i = j
	}
	return string(out), true
}

// hidesDotSegment reports whether seg, split at backslashes and with
// path parameters (";...") cut off, holds "." or "..".
func hidesDotSegment(seg string) bool {
	for piece := range strings.SplitSeq(seg, "\\") {
		if k := strings.IndexByte(piece, ';'); k >= 0 {
			piece = piece[:k]
		}
		if piece == "." || piece == ".." {
			return true
		}
	}
	return false
}

func (h *hostRoutes) match(p string) *route {
	for _, r := range h.routes {
		if pathMatches(r.path, p) {
			return r
		}
	}
	return nil
}

// match finds the route for a canonical host and a request path. An exact
// host wins over a wildcard, whatever the path: a path the host's routes
// do not serve is no route, never the wildcard's (which may be another
// namespace's, and would get the host's cookies), as in a Kubernetes
// Ingress. Within a host the longest prefix wins.
func (t *table) match(host, p string) *route {
	if h := t.hosts[host]; h != nil {
		return h.match(p)
	}
	if i := strings.IndexByte(host, '.'); i > 0 {
		if h := t.wild[host[i+1:]]; h != nil {
			return h.match(p)
		}
	}
	return nil
}

// routeHost is the host of the routes that serve host, for SNI: host
// itself, or the wildcard (*.example.com) that covers it; false when no
// route serves it.
func (t *table) routeHost(host string) (string, bool) {
	if t.hosts[host] != nil {
		return host, true
	}
	if i := strings.IndexByte(host, '.'); i > 0 && t.wild[host[i+1:]] != nil {
		return "*" + host[i:], true
	}
	return "", false
}

// canonicalHost lower-cases a Host header or SNI name and strips its port
// and a trailing dot. It does not allocate for the common lower-case case.
func canonicalHost(h string) string {
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			h = h[1:i]
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 && strings.IndexByte(h, ':') == i {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if c := h[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

// cleanPath normalises a route path to "/" or "/a/b", as the API's
// collision check does.
func cleanPath(p string) string { return v1.RoutePath(p) }

// httpPort is the port a route without a port name goes to.
func httpPort(svc *discovery.Service, name string) (v1.Port, bool) {
	for _, p := range svc.Ports {
		isHTTP := p.Protocol == v1.ProtocolHTTP || p.Protocol == ""
		if name != "" && p.Name == name {
			return p, isHTTP
		}
		if name == "" && isHTTP {
			return p, true
		}
	}
	return v1.Port{}, false
}

// conflict is a host+path claimed by more than one app; the first claim
// in key order wins and the rest are reported.
type conflict struct {
	host, path, winner, loser string
}

// tableBuilder turns a snapshot into a table, reusing endpoint and app
// objects from the previous build.
type tableBuilder struct {
	cfg       *Config
	endpoint  func(key, addr, instance string, app *appStats) *endpoint
	app       func(ns, name string) *appStats
	conflicts []conflict
	skipped   []string // routes that name no usable port
}

func (b *tableBuilder) build(s *discovery.Snapshot) *table {
	t := &table{
		hosts:    map[string]*hostRoutes{},
		wild:     map[string]*hostRoutes{},
		backends: map[string]*backend{},
	}
	if s == nil {
		return t
	}
	t.revision = s.Revision
	claims := map[string]*route{} // host + " " + path
	add := func(r *route) {
		k := r.host + " " + r.path
		if prev, ok := claims[k]; ok {
			// An explicit route beats a default host; otherwise the first
			// app in key order keeps it. Validation rejects collisions at
			// apply time; this only keeps the table deterministic.
			if !prev.explicit && r.explicit {
				claims[k] = r
				return
			}
			b.conflicts = append(b.conflicts, conflict{host: r.host, path: r.path, winner: prev.backend.app.key, loser: r.backend.app.key})
			return
		}
		claims[k] = r
	}
	for _, svc := range s.Sorted() {
		app := b.app(svc.Namespace, svc.Name)
		backendFor := func(kind string, p v1.Port) *backend {
			key := kind + svc.Key() + "/" + p.Name
			if be := t.backends[key]; be != nil {
				return be
			}
			policy := b.cfg.Balancer
			if svc.Balancing != "" {
				policy = svc.Balancing
			}
			be := &backend{key: key, app: app, port: p.Port, least: policy == LeastRequests}
			for _, e := range svc.Ready {
				port := e.PortFor(p)
				if e.IP == "" || port == 0 {
					// No port of that name: an instance of a revision
					// before the port was added or renamed.
					continue
				}
				addr := net.JoinHostPort(e.IP, strconv.Itoa(port))
				be.eps = append(be.eps, b.endpoint(e.Instance+"@"+addr, addr, e.Instance, app))
			}
			// Start round-robin at a spread-out point so frequent
			// snapshots do not keep favouring the first instance.
			be.next.Store(uint64(s.Revision))
			t.backends[key] = be
			return be
		}
		if p, ok := httpPort(svc, ""); ok && b.cfg.AppsDomain != "" {
			host := svc.Name + "." + svc.Namespace + "." + b.cfg.AppsDomain
			add(&route{host: host, path: "/", backend: backendFor("", p)})
		} else if b.cfg.AppsDomain != "" {
			if t.noHTTP == nil {
				t.noHTTP = map[string]bool{}
			}
			t.noHTTP[svc.Name+"."+svc.Namespace+"."+b.cfg.AppsDomain] = true
		}
		for _, rt := range svc.Routes {
			p, ok := httpPort(svc, rt.Port)
			if !ok {
				b.skipped = append(b.skipped, svc.Key()+" "+rt.Host+cleanPath(rt.Path))
				continue
			}
			add(&route{host: strings.ToLower(strings.TrimSuffix(rt.Host, ".")), path: cleanPath(rt.Path), backend: backendFor("", p), explicit: true,
				toHTTPS: rt.TLS != "" && !rt.AllowHTTP})
		}
		for _, p := range svc.Ports {
			if p.Expose == exposeTCP {
				backendFor(tcpKeyPrefix, p)
			}
		}
	}
	for _, r := range claims {
		m, host := t.hosts, r.host
		if strings.HasPrefix(host, "*.") {
			m, host = t.wild, host[2:]
		}
		h := m[host]
		if h == nil {
			h = &hostRoutes{}
			m[host] = h
		}
		h.routes = append(h.routes, r)
	}
	for _, m := range []map[string]*hostRoutes{t.hosts, t.wild} {
		for _, h := range m {
			sort.Slice(h.routes, func(i, j int) bool { return len(h.routes[i].path) > len(h.routes[j].path) })
		}
	}
	return t
}
