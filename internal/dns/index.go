package dns

import (
	"maps"
	"net"
	"slices"
	"strings"
	"time"

	miekg "github.com/miekg/dns"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/discovery"
)

// rrset holds the precomputed records of one name in the cluster zone. A
// name that exists with no records at all (an empty non-terminal such as
// NS.svc.DOMAIN) has an empty rrset: it answers NODATA, not NXDOMAIN.
//
// The slices are shared by every query that reads them and must never be
// written after the index is built; responses copy before appending.
type rrset struct {
	a, aaaa, srv, soa, ns []miekg.RR
	// extra is the additional section of an SRV answer: the addresses of
	// its targets, saving clients a round trip per target.
	extra []miekg.RR
}

// forType returns the answer for qtype and the additional records that go
// with it.
func (r *rrset) forType(qtype uint16) (answer, extra []miekg.RR) {
	switch qtype {
	case miekg.TypeA:
		return r.a, nil
	case miekg.TypeAAAA:
		return r.aaaa, nil
	case miekg.TypeSRV:
		return r.srv, r.extra
	case miekg.TypeSOA:
		return r.soa, nil
	case miekg.TypeNS:
		return r.ns, nil
	case miekg.TypeANY:
		n := len(r.a) + len(r.aaaa) + len(r.srv) + len(r.soa) + len(r.ns)
		if n == 0 {
			return nil, nil
		}
		all := make([]miekg.RR, 0, n)
		all = append(all, r.soa...)
		all = append(all, r.ns...)
		all = append(all, r.a...)
		all = append(all, r.aaaa...)
		all = append(all, r.srv...)
		return all, nil
	}
	return nil, nil
}

// index is everything a query needs from one snapshot, so that answering
// is a couple of map lookups rather than a scan over services. Records are
// grouped per service so that a new snapshot reuses the records of every
// service that did not change: propagation then costs a map insert per
// service instead of rebuilding every record.
type index struct {
	snap *discovery.Snapshot
	// apex is DOMAIN; svc is svc.DOMAIN and empty is every other empty
	// non-terminal (NS.svc.DOMAIN, ns.DOMAIN): they exist, with no
	// records.
	apex, empty rrset
	namespaces  map[string]struct{}
	// services are keyed by "APP.NS", a suffix of the query name, so a
	// lookup needs no allocation.
	services map[string]*svcRecords
	// routes are route hosts outside our zones, answered with the load
	// balancer's addresses; wildRoutes are the parents of "*.PARENT"
	// route hosts. Each maps to the namespaces whose Apps route it.
	routes     map[string][]string
	wildRoutes map[string][]string
	// soa and appsSOA go into the authority section of negative answers.
	soa, appsSOA miekg.RR
	appsNS       miekg.RR
	// reverse answers PTR queries of instance addresses.
	reverse reverseIndex
}

// loaded reports whether the index reflects a read of the store: not so
// for the nil or Initial snapshot a source holds before it has synced.
func (idx *index) loaded() bool { return idx.snap != nil && !idx.snap.Initial }

// svcRecords are the records of one service.
type svcRecords struct {
	// src is what they were built from, to tell whether the next
	// snapshot changed the service.
	src  *discovery.Service
	self rrset
	// names are the names below the service, keyed by the labels in
	// front of it: "INSTANCE", "_PORT._tcp", "_tcp".
	names map[string]*rrset
}

// lookup finds the rrset of a lower-case name of the cluster zone; nil
// means the name does not exist.
func (idx *index) lookup(z *zones, name string) *rrset {
	switch name {
	case z.domain:
		return &idx.apex
	case z.svc, z.nameserver:
		return &idx.empty
	}
	rest, ok := strings.CutSuffix(name, z.svcSuffix)
	if !ok {
		return nil
	}
	// rest is "[PREFIX.]APP.NS". Escaped dots (\.) inside a label may
	// split it wrongly, but then the key holds a backslash, which no
	// service key does, so the name is not found, as it should not be.
	i := strings.LastIndexByte(rest, '.')
	if i < 0 {
		if _, ok := idx.namespaces[rest]; ok {
			return &idx.empty
		}
		return nil
	}
	j := strings.LastIndexByte(rest[:i], '.')
	sr := idx.services[rest[j+1:]]
	if sr == nil {
		return nil
	}
	if j < 0 {
		return &sr.self
	}
	return sr.names[rest[:j]]
}

// zones are the fixed names derived from a Config.
type zones struct {
	domain     string // "gantry.internal."
	svc        string // "svc.gantry.internal."
	svcSuffix  string // ".svc.gantry.internal."
	apps       string // "localhost."
	nameserver string // "ns.gantry.internal.", the target of our NS records
	ttl        uint32
}

func newZones(c *Config) zones {
	ttl := uint32(c.TTL.Round(time.Second) / time.Second)
	if ttl == 0 {
		ttl = 1
	}
	return zones{
		domain:     c.Domain,
		svc:        "svc." + c.Domain,
		svcSuffix:  ".svc." + c.Domain,
		apps:       c.AppsDomain,
		nameserver: "ns." + c.Domain,
		ttl:        ttl,
	}
}

// Records at the apex change only with the snapshot revision; one minute
// is plenty for them and keeps resolvers from re-asking on every lookup.
const apexTTL = 60

func (z zones) soaFor(zone string, serial uint32) *miekg.SOA {
	return &miekg.SOA{
		Hdr:     miekg.RR_Header{Name: zone, Rrtype: miekg.TypeSOA, Class: miekg.ClassINET, Ttl: z.ttl},
		Ns:      z.nameserver,
		Mbox:    "hostmaster." + z.domain,
		Serial:  serial,
		Refresh: 60,
		Retry:   30,
		Expire:  3600,
		// Minttl is the negative-caching TTL (RFC 2308): as short as the
		// positive one, so a name that appears is seen at once.
		Minttl: z.ttl,
	}
}

func (z zones) nsFor(zone string) *miekg.NS {
	return &miekg.NS{
		Hdr: miekg.RR_Header{Name: zone, Rrtype: miekg.TypeNS, Class: miekg.ClassINET, Ttl: apexTTL},
		Ns:  z.nameserver,
	}
}

// buildIndex derives the index of one snapshot, reusing from prev (which
// may be nil) the records of services that did not change. It never
// fails: a service or endpoint whose name or address cannot be put into
// DNS is left out.
func buildIndex(z *zones, snap *discovery.Snapshot, prev *index) *index {
	idx := &index{
		snap:       snap,
		namespaces: make(map[string]struct{}),
		routes:     make(map[string][]string),
		wildRoutes: make(map[string][]string),
	}
	var serial uint32
	if snap != nil {
		// The store revision only grows, so it makes a serial that
		// secondaries and humans can compare.
		serial = uint32(snap.Revision)
		idx.services = make(map[string]*svcRecords, len(snap.Services))
	}
	soa := z.soaFor(z.domain, serial)
	idx.soa = soa
	idx.appsSOA = z.soaFor(z.apps, serial)
	idx.appsNS = z.nsFor(z.apps)
	idx.apex = rrset{soa: []miekg.RR{soa}, ns: []miekg.RR{z.nsFor(z.domain)}}
	if snap == nil {
		return idx
	}
	for _, svc := range snap.Services {
		if svc == nil {
			continue
		}
		for _, r := range svc.Routes {
			idx.addRoute(z, r.Host, strings.ToLower(svc.Namespace))
		}
		ns, app := strings.ToLower(svc.Namespace), strings.ToLower(svc.Name)
		if !isLabel(ns) || !isLabel(app) {
			continue
		}
		key := app + "." + ns
		idx.namespaces[ns] = struct{}{}
		if prev != nil {
			if old := prev.services[key]; old != nil && sameService(old.src, svc) {
				idx.services[key] = old
				continue
			}
		}
		idx.services[key] = buildService(z, key+z.svcSuffix, svc)
	}
	return idx
}

// buildService makes the records of one service named svcName.
func buildService(z *zones, svcName string, svc *discovery.Service) *svcRecords {
	sr := &svcRecords{src: svc, names: make(map[string]*rrset, len(svc.All)+2*len(svc.Ports)+2)}
	for _, ep := range svc.Ready {
		addAddr(&sr.self, svcName, ep.IP, z.ttl)
	}
	// Instance names: every instance with an IP, ready or not, so a peer
	// can reach one that is still starting (leader election, a database
	// of one).
	targets := make(map[string]miekg.RR, len(svc.All))
	for _, ep := range svc.All {
		inst := strings.ToLower(ep.Instance)
		if !isLabel(inst) {
			continue
		}
		set := sr.names[inst]
		if set == nil {
			set = &rrset{}
			sr.names[inst] = set
		}
		if rr := addAddr(set, inst+"."+svcName, ep.IP, z.ttl); rr != nil {
			targets[inst] = rr
		}
	}
	sr.addSRV(z, svcName, svc, targets)
	return sr
}

// addSRV adds _PORT._PROTO for every named port, with one target per
// ready instance.
func (sr *svcRecords) addSRV(z *zones, svcName string, svc *discovery.Service, targets map[string]miekg.RR) {
	for _, p := range svc.Ports {
		port := strings.ToLower(p.Name)
		if !isLabel(port) || p.Port <= 0 || p.Port > 65535 {
			continue
		}
		proto := "_tcp"
		if p.Protocol == v1.ProtocolUDP {
			proto = "_udp"
		}
		if sr.names[proto] == nil {
			sr.names[proto] = &rrset{}
		}
		rel := "_" + port + "." + proto
		if sr.names[rel] != nil {
			continue // a duplicate port name; the first one wins
		}
		set := &rrset{}
		sr.names[rel] = set
		name := rel + "." + svcName
		weight := uint16(1)
		if n := len(svc.Ready); n > 0 && n < 100 {
			weight = uint16(100 / n)
		}
		for _, ep := range svc.Ready {
			inst := strings.ToLower(ep.Instance)
			addr, ok := targets[inst]
			if !ok || ep.PortFor(p) == 0 {
				// A ready endpoint without a usable instance name
				// cannot be a resolvable SRV target; one without the
				// port (an old revision's) does not serve it.
				continue
			}
			set.srv = append(set.srv, &miekg.SRV{
				Hdr:      miekg.RR_Header{Name: name, Rrtype: miekg.TypeSRV, Class: miekg.ClassINET, Ttl: z.ttl},
				Priority: 0,
				Weight:   weight,
				Port:     uint16(ep.PortFor(p)),
				Target:   inst + "." + svcName,
			})
			set.extra = append(set.extra, addr)
		}
	}
}

// sameService reports whether two services would give the same records.
// Sources usually hand the unchanged *Service of the previous snapshot on,
// which makes this a pointer comparison.
func sameService(a, b *discovery.Service) bool {
	if a == b {
		return true
	}
	if a.Namespace != b.Namespace || a.Name != b.Name || len(a.Ports) != len(b.Ports) ||
		len(a.Ready) != len(b.Ready) || len(a.All) != len(b.All) || len(a.Draining) != len(b.Draining) {
		return false
	}
	for i := range a.Ports {
		pa, pb := a.Ports[i], b.Ports[i]
		if pa.Name != pb.Name || pa.Port != pb.Port || pa.Protocol != pb.Protocol {
			return false
		}
	}
	for i := range a.Ready {
		if a.Ready[i].Instance != b.Ready[i].Instance || a.Ready[i].IP != b.Ready[i].IP ||
			!maps.Equal(a.Ready[i].Ports, b.Ready[i].Ports) {
			return false
		}
	}
	for i := range a.All {
		if a.All[i].Instance != b.All[i].Instance || a.All[i].IP != b.All[i].IP {
			return false
		}
	}
	for i := range a.Draining {
		if a.Draining[i].IP != b.Draining[i].IP {
			return false
		}
	}
	return true
}

// addRoute records an App route host that lies outside our zones, routed
// by an App of namespace ns.
func (idx *index) addRoute(z *zones, host, ns string) {
	host = strings.ToLower(strings.TrimSpace(host))
	if host == "" {
		return
	}
	host = miekg.Fqdn(host)
	if _, ok := miekg.IsDomainName(host); !ok {
		return
	}
	if inZone(host, z.domain) || inZone(host, z.apps) {
		// Our zones answer these already (the apps zone with the same
		// addresses); a route cannot override a service name.
		return
	}
	m := idx.routes
	if parent, ok := strings.CutPrefix(host, "*."); ok {
		m, host = idx.wildRoutes, parent
	}
	if !slices.Contains(m[host], ns) {
		m[host] = append(m[host], ns)
	}
}

// routeOwners reports whether name is a route host, exactly or through a
// wildcard route "*.PARENT" for one label under PARENT (the names the
// load balancer routes, as a Kubernetes Ingress wildcard does, not a DNS
// wildcard's any depth, which would send clients to a 404), and the
// namespaces whose Apps route it.
func (idx *index) routeOwners(name string) ([]string, bool) {
	if ns, ok := idx.routes[name]; ok {
		return ns, true
	}
	if len(idx.wildRoutes) == 0 {
		return nil, false
	}
	i := strings.IndexByte(name, '.')
	if i <= 0 || i == len(name)-1 {
		return nil, false
	}
	ns, ok := idx.wildRoutes[name[i+1:]]
	return ns, ok
}

// addAddr adds an A or AAAA record for ip to set and returns it, or nil
// when ip is not an address or is already there.
func addAddr(set *rrset, name, ip string, ttl uint32) miekg.RR {
	addr := net.ParseIP(ip)
	if addr == nil {
		return nil
	}
	hdr := miekg.RR_Header{Name: name, Class: miekg.ClassINET, Ttl: ttl}
	if v4 := addr.To4(); v4 != nil {
		for _, rr := range set.a {
			if rr.(*miekg.A).A.Equal(v4) {
				return nil
			}
		}
		hdr.Rrtype = miekg.TypeA
		rr := &miekg.A{Hdr: hdr, A: v4}
		set.a = append(set.a, rr)
		return rr
	}
	for _, rr := range set.aaaa {
		if rr.(*miekg.AAAA).AAAA.Equal(addr) {
			return nil
		}
	}
	hdr.Rrtype = miekg.TypeAAAA
	rr := &miekg.AAAA{Hdr: hdr, AAAA: addr}
	set.aaaa = append(set.aaaa, rr)
	return rr
}

// inZone reports whether the lower-case fqdn name is zone or below it.
func inZone(name, zone string) bool {
	if len(name) == len(zone) {
		return name == zone
	}
	return len(name) > len(zone) && name[len(name)-len(zone)-1] == '.' && strings.HasSuffix(name, zone)
}
