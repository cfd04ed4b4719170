package network

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"
)

// BenchmarkSetupTeardown measures one instance's network attachment and
// detachment with the real plugins, with and without a published port
// (portmap then runs iptables). It reports Setup and Teardown separately in
// ms/op; the deploy target is apply -> running in ~120 ms in all.
func BenchmarkSetupTeardown(b *testing.B) {
	for _, bc := range []struct {
		name  string
		ports bool
	}{{"no ports", false}, {"one published port", true}} {
		b.Run(bc.name, func(b *testing.B) {
			n := newTestNetwork(b)
			ctx := context.Background()
			var ports []PortMapping
			if bc.ports {
				ports = []PortMapping{{HostPort: freePort(b), ContainerPort: 80}}
			}
			// The first Setup creates the bridge; keep it out of the figures.
			setup(b, n, "warmup", ports...)
			if err := n.Teardown(ctx, "warmup"); err != nil {
				b.Fatal(err)
			}
			var setupTime, teardownTime time.Duration
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				id := fmt.Sprintf("bench-%d", i)
				start := time.Now()
				if _, err := n.Setup(ctx, id, ports); err != nil {
					b.Fatal(err)
				}
				mid := time.Now()
				if err := n.Teardown(ctx, id); err != nil {
					b.Fatal(err)
				}
				setupTime += mid.Sub(start)
				teardownTime += time.Since(mid)
			}
			b.ReportMetric(float64(setupTime.Microseconds())/1000/float64(b.N), "setup-ms/op")
			b.ReportMetric(float64(teardownTime.Microseconds())/1000/float64(b.N), "teardown-ms/op")
		})
	}
}

// BenchmarkSetupExisting is the idempotent path an agent takes for every
// instance after a restart.
func BenchmarkSetupExisting(b *testing.B) {
	n := newTestNetwork(b)
	setup(b, n, "existing")
	for b.Loop() {
		if _, err := n.Setup(context.Background(), "existing", nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSetPolicy rewrites the isolation chains for a node full of
// instances in ten namespaces.
func BenchmarkSetPolicy(b *testing.B) {
	for _, size := range []int{10, 100} {
		b.Run(fmt.Sprintf("%d members", size), func(b *testing.B) {
			n := newTestNetwork(b)
			members := make([]Member, size)
			for i := range members {
				members[i] = Member{
					IP:        net.IPv4(10, 251, 200, byte(i+2)),
					Namespace: fmt.Sprintf("ns%d", i%10),
					AllowFrom: []string{fmt.Sprintf("ns%d", (i+1)%10)},
				}
			}
			for b.Loop() {
				if err := n.SetPolicy(context.Background(), members); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
