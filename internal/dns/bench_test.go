package dns

import (
	"fmt"
	"testing"
	"time"

	miekg "github.com/miekg/dns"

	"github.com/gantry-dev/gantry/internal/discovery"
)

// discard is a ResponseWriter that only counts bytes, so the benchmark
// measures the handler and not a recorder.
type discard struct{ recorder }

func (d *discard) Write(b []byte) (int, error) { return len(b), nil }

// benchSnapshot is 100 apps of 3 ready instances each, the shape bench/dns
// serves too.
func benchSnapshot() *discovery.Snapshot {
	var services []*discovery.Service
	for a := range 100 {
		ips := make([]string, 3)
		for i := range ips {
			ips[i] = fmt.Sprintf("10.88.%d.%d", a, i+1)
		}
		services = append(services, svc("default", fmt.Sprintf("app%d", a), 3, ips...))
	}
	return snapshot(1, services...)
}

// BenchmarkServeDNS measures one answer from the handler: lookup, build,
// truncate check, pack.
func BenchmarkServeDNS(b *testing.B) {
	s, _ := newTestServer(b, Config{}, benchSnapshot())
	for _, bc := range []struct {
		name  string
		qname string
		qtype uint16
	}{
		{"A", "app42.default.svc.gantry.internal.", miekg.TypeA},
		{"SRV", "_http._tcp.app42.default.svc.gantry.internal.", miekg.TypeSRV},
		{"NXDOMAIN", "nope.default.svc.gantry.internal.", miekg.TypeA},
		{"apps domain", "app42.default.localhost.", miekg.TypeA},
	} {
		b.Run(bc.name, func(b *testing.B) {
			q := new(miekg.Msg)
			q.SetQuestion(bc.qname, bc.qtype)
			w := &discard{*newRecorder(false)}
			b.ReportAllocs()
			for b.Loop() {
				s.ServeDNS(w, q)
			}
		})
	}
}

// BenchmarkIndex measures rebuilding the index for a new snapshot, the
// part of endpoint propagation that is ours.
func BenchmarkIndex(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("%d apps x 3", n), func(b *testing.B) {
			var services []*discovery.Service
			for a := range n {
				services = append(services, svc("default", fmt.Sprintf("app%d", a), 3,
					fmt.Sprintf("10.%d.%d.1", a/250, a%250), fmt.Sprintf("10.%d.%d.2", a/250, a%250), fmt.Sprintf("10.%d.%d.3", a/250, a%250)))
			}
			snap := snapshot(1, services...)
			z := newZones(&Config{Domain: "gantry.internal.", AppsDomain: "localhost.", TTL: time.Second})
			b.Run("from scratch", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					buildIndex(&z, snap, nil)
				}
			})
			b.Run("one service changed", func(b *testing.B) {
				prev := buildIndex(&z, snap, nil)
				next := snapshot(2, services...)
				changed := *services[0]
				changed.Ready = changed.Ready[:2]
				next.Services[changed.Key()] = &changed
				b.ReportAllocs()
				for b.Loop() {
					buildIndex(&z, next, prev)
				}
			})
		})
	}
}
