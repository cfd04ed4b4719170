package dns

import (
	"net/netip"
	"slices"
	"strings"
	"sync"

	miekg "github.com/miekg/dns"
)

// Reverse lookups (PTR) of instance addresses: `dig -x 10.77.0.5` names
// the instance, as CoreDNS does for Kubernetes endpoints, so that logs,
// netstat and servers that look up their peers show names. Addresses
// Gantry does not know are forwarded as before.

const (
	reverseV4 = ".in-addr.arpa."
	reverseV6 = ".ip6.arpa."
)

// reverseIndex maps instance addresses to their names. It is built on
// the first reverse query of a snapshot rather than with the index, so
// that propagation does not pay for a lookup that is rarely made.
type reverseIndex struct {
	once  sync.Once
	names map[netip.Addr][]string
	// namespaces are the namespaces of the instances at an address
	// (several for a node's address shared by hostNetwork instances).
	namespaces map[netip.Addr][]string
}

func (idx *index) buildReverse(z *zones) {
	idx.reverse.once.Do(func() {
		m := make(map[netip.Addr][]string)
		nss := make(map[netip.Addr][]string)
		for key, sr := range idx.services {
			ns := strings.ToLower(sr.src.Namespace)
			for _, ep := range sr.src.All {
				a, err := netip.ParseAddr(ep.IP)
				if err != nil {
					continue
				}
				a = a.Unmap()
				if !slices.Contains(nss[a], ns) {
					nss[a] = append(nss[a], ns)
				}
				if inst := strings.ToLower(ep.Instance); isLabel(inst) {
					m[a] = append(m[a], inst+"."+key+z.svcSuffix)
				}
			}
			// A draining instance has no name any more, but its
			// lookups are still its namespace's (answersRoute).
			for _, ep := range sr.src.Draining {
				if a, err := netip.ParseAddr(ep.IP); err == nil && !slices.Contains(nss[a.Unmap()], ns) {
					nss[a.Unmap()] = append(nss[a.Unmap()], ns)
				}
			}
		}
		idx.reverse.names, idx.reverse.namespaces = m, nss
	})
}

func (idx *index) reverseNames(z *zones, ip netip.Addr) []string {
	idx.buildReverse(z)
	return idx.reverse.names[ip]
}

// instanceNamespaces returns the namespaces of the instances at ip, none
// when ip is not an instance's.
func (idx *index) instanceNamespaces(z *zones, ip netip.Addr) []string {
	idx.buildReverse(z)
	return idx.reverse.namespaces[ip.Unmap()]
}

// reverseAddr parses a lower-case reverse name of a whole address:
// "d.c.b.a.in-addr.arpa." or 32 nibbles under "ip6.arpa.".
func reverseAddr(name string) (netip.Addr, bool) {
	if rest, ok := strings.CutSuffix(name, reverseV4); ok {
		labels := strings.Split(rest, ".")
		if len(labels) != 4 {
			return netip.Addr{}, false
		}
		var b [4]byte
		for i, l := range labels {
			n, ok := decimalOctet(l)
			if !ok {
				return netip.Addr{}, false
			}
			b[3-i] = n
		}
		return netip.AddrFrom4(b), true
	}
	if rest, ok := strings.CutSuffix(name, reverseV6); ok {
		// 32 one-digit labels and the dots between them.
		if len(rest) != 63 {
			return netip.Addr{}, false
		}
		var b [16]byte
		for i := 0; i < 32; i++ {
			if i > 0 && rest[2*i-1] != '.' {
				return netip.Addr{}, false
			}
			v, ok := hexNibble(rest[2*i])
			if !ok {
				return netip.Addr{}, false
			}
			// Label i is nibble 31-i of the address, lowest first.
			n := 31 - i
			if n%2 == 0 {
				b[n/2] |= v << 4
			} else {
				b[n/2] |= v
			}
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}

// decimalOctet parses 0-255 without leading zeros or signs.
func decimalOctet(s string) (byte, bool) {
	if len(s) == 0 || len(s) > 3 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	if n > 255 {
		return 0, false
	}
	return byte(n), true
}

func hexNibble(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// answerReverse answers a reverse name of an instance's address and
// reports whether it did; other names are left to the caller.
func (s *Server) answerReverse(m *miekg.Msg, idx *index, name string, q miekg.Question) bool {
	ip, ok := reverseAddr(name)
	if !ok {
		return false
	}
	names := idx.reverseNames(&s.z, ip.Unmap())
	if len(names) == 0 {
		return false
	}
	m.Authoritative = true
	if q.Qtype == miekg.TypePTR || q.Qtype == miekg.TypeANY {
		for _, n := range names {
			m.Answer = append(m.Answer, &miekg.PTR{
				Hdr: miekg.RR_Header{Name: q.Name, Rrtype: miekg.TypePTR, Class: miekg.ClassINET, Ttl: s.z.ttl},
				Ptr: n,
			})
		}
		return true
	}
	// NODATA, with the name itself as the apex of what we answer, as
	// for route hosts; so its SOA is there to be asked for.
	soa := s.z.soaFor(name, idx.soa.(*miekg.SOA).Serial)
	if q.Qtype == miekg.TypeSOA {
		m.Answer = withOwner([]miekg.RR{soa}, q.Name, name)
		return true
	}
	m.Ns = []miekg.RR{soa}
	return true
}
