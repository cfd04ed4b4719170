package scheduler

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// cluster is a simulated cluster for the benchmark: nodes of varied size
// and labels, and a stream of instance requests from many apps, every one
// of them under constraints.
type cluster struct {
	nodes []*v1.Node
	reqs  []Request
	keys  []string
}

// simulate builds a cluster of nNodes nodes and nInstances requests,
// the same for a given seed.
//
// Nodes: 4 to 64 cores with 2 to 4 GiB per core, a 110-instance limit;
// labels zone (a, b, c), disk (ssd 60 %, hdd), arch (amd64 80 %, arm64),
// rack (100 values), gpu=yes on 5 %; 1 % not ready and 1 % cordoned.
// Apps: 200, each with 1 or 2 constraints drawn from a mix (disk=ssd,
// zone in (a,b), arch=amd64, gpu !exists, zone=c with disk=ssd, and gpu
// exists for 1 app in 200), cpu 50m to 2, memory 64Mi to 4Gi, one in five
// spread, one in fifty publishing a host port of its own (and constrained
// only to gpu !exists).
func simulate(seed uint64, nNodes, nInstances int) cluster {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	c := cluster{}
	cores := []v1.CPU{4000, 8000, 16000, 32000, 64000}
	for i := range nNodes {
		cpu := cores[rng.IntN(len(cores))]
		mem := v1.Bytes(int64(cpu)/1000) * v1.Bytes(2+rng.IntN(3)) * gi
		labels := []string{
			"zone", string(rune('a' + rng.IntN(3))),
			"disk", pick(rng, 0.6, "ssd", "hdd"),
			"arch", pick(rng, 0.8, "amd64", "arm64"),
			"rack", fmt.Sprintf("r%02d", rng.IntN(100)),
		}
		if rng.Float64() < 0.05 {
			labels = append(labels, "gpu", "yes")
		}
		n := newNode(fmt.Sprintf("node-%04d", i), cpu, mem, labels...)
		n.Status.Allocatable.Instances = 110
		switch rng.IntN(100) {
		case 0:
			n.Status.Ready = false
		case 1:
			n.Spec.Unschedulable = true
		}
		c.nodes = append(c.nodes, n)
	}
	constraintSets := [][]v1.Constraint{
		{{Label: "disk", Value: "ssd"}},
		{{Label: "zone", Op: v1.OpIn, Values: []string{"a", "b"}}},
		{{Label: "arch", Value: "amd64"}},
		{{Label: "gpu", Op: v1.OpNotExists}},
		{{Label: "zone", Value: "c"}, {Label: "disk", Value: "ssd"}},
		{{Label: "arch", Value: "amd64"}, {Label: "disk", Op: v1.OpNotEqual, Value: "hdd"}},
	}
	// Weighted so that no constraint set asks for much more than its
	// nodes' share of the cluster, as a real cluster's apps would.
	constraintWeights := []int{30, 25, 20, 15, 4, 6}
	cpus := []v1.CPU{50, 100, 250, 500, 1000, 2000}
	mems := []v1.Bytes{64 * mi, 128 * mi, 256 * mi, 512 * mi, gi, 2 * gi, 4 * gi}
	apps := make([]Request, 200)
	for i := range apps {
		r := Request{
			App:         fmt.Sprintf("ns%d/app-%d", i%10, i),
			CPU:         cpus[rng.IntN(len(cpus))],
			Memory:      mems[rng.IntN(len(mems))],
			Constraints: constraintSets[weighted(rng, constraintWeights)],
			Placement:   v1.PlacementBinpack,
		}
		if i%200 == 0 {
			r.Constraints = []v1.Constraint{{Label: "gpu", Op: v1.OpExists}}
		}
		if rng.IntN(5) == 0 {
			r.Placement = v1.PlacementSpread
		}
		if rng.IntN(50) == 0 {
			// One instance per node at most, so a node agent's kind
			// of app: it may run on any node without a gpu.
			r.HostPorts = []HostPort{{Port: 9100 + i, Protocol: "tcp"}}
			r.Constraints = constraintSets[3]
		}
		apps[i] = r
	}
	c.reqs = make([]Request, nInstances)
	c.keys = make([]string, nInstances)
	for i := range c.reqs {
		c.reqs[i] = apps[rng.IntN(len(apps))]
		c.keys[i] = fmt.Sprintf("%s-%d", c.reqs[i].App, i)
	}
	return c
}

func weighted(rng *rand.Rand, weights []int) int {
	total := 0
	for _, w := range weights {
		total += w
	}
	x := rng.IntN(total)
	for i, w := range weights {
		if x < w {
			return i
		}
		x -= w
	}
	return len(weights) - 1
}

func pick(rng *rand.Rand, p float64, a, b string) string {
	if rng.Float64() < p {
		return a
	}
	return b
}

// placeAll places every request in order on a fresh snapshot, recording
// each decision, and returns the snapshot and how many did not fit.
func (c cluster) placeAll(placed []string) (*Snapshot, int) {
	s := NewSnapshot(c.nodes, nil)
	failed := 0
	for i := range c.reqs {
		node, err := Place(s, &c.reqs[i])
		if err != nil {
			failed++
			continue
		}
		s.Assign(c.keys[i], node, &c.reqs[i])
		if placed != nil {
			placed[i] = node
		}
	}
	return s, failed
}

// BenchmarkPlace places 100,000 instances on 5,000 simulated nodes, one
// after another on one goroutine, each decision recorded before the next
// (as the scheduler loop does). It reports placements per second of wall
// time and per second of the process's CPU time; run it with
// GOMAXPROCS=1 for the one-core figure.
func BenchmarkPlace(b *testing.B) {
	const nNodes, nInstances = 5000, 100_000
	c := simulate(42, nNodes, nInstances)
	var (
		elapsed, cpu time.Duration
		failed       int
		used         int
	)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		s := NewSnapshot(c.nodes, nil)
		b.StartTimer()
		start, startCPU := time.Now(), processCPU(b)
		failed = 0
		for i := range c.reqs {
			node, err := Place(s, &c.reqs[i])
			if err != nil {
				failed++
				continue
			}
			s.Assign(c.keys[i], node, &c.reqs[i])
		}
		elapsed += time.Since(start)
		cpu += processCPU(b) - startCPU
		b.StopTimer()
		used = 0
		for _, n := range c.nodes {
			if info, _ := s.Node(n.Metadata.Name); info.Placed.Instances > 0 {
				used++
			}
		}
		b.StartTimer()
	}
	total := float64(b.N * nInstances)
	b.ReportMetric(total/elapsed.Seconds(), "placements/s")
	b.ReportMetric(total/cpu.Seconds(), "placements/cpu-s")
	b.ReportMetric(float64(elapsed.Nanoseconds())/total, "ns/placement")
	b.ReportMetric(float64(failed), "unplaced")
	b.ReportMetric(float64(used), "nodes-used")
}

// BenchmarkPlaceNoFit is the slow path at 5,000 nodes: a request no node
// can take, explained per reason. The loop pays it once per distinct
// request in each retry pass.
func BenchmarkPlaceNoFit(b *testing.B) {
	c := simulate(42, 5000, 0)
	s := NewSnapshot(c.nodes, nil)
	r := Request{CPU: 100, Memory: 1 << 40, Constraints: []v1.Constraint{{Label: "disk", Value: "ssd"}}}
	for b.Loop() {
		if _, err := Place(s, &r); err == nil {
			b.Fatal("a 1Ti request fitted")
		}
	}
}

// processCPU is the CPU time the test process has used. On a shared
// machine wall-clock throughput depends on the neighbours; CPU time says
// what one core achieves.
func processCPU(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// The benchmark's workload, at a tenth of the size, checked for what Place
// promises: no node over its cpu, memory or instance limit, every
// placement on a ready, uncordoned node that matches the constraints, no
// host port taken twice, spread apps never doubled up on a node while
// another feasible node had fewer of them, and the same answers on a
// second run.
func TestPlaceKeepsPromisesAtScale(t *testing.T) {
	c := simulate(7, 500, 10_000)
	placed := make([]string, len(c.reqs))
	s := NewSnapshot(c.nodes, nil)
	failed := 0
	for i := range c.reqs {
		r := &c.reqs[i]
		node, err := Place(s, r)
		if err != nil {
			failed++
			continue
		}
		if r.Placement == v1.PlacementSpread {
			fewest := s.AppCount(node, r.App)
			for _, j := range s.candidates(nil) {
				if n := &s.nodes[j]; feasible(n, r) && MatchesConstraints(n, r) {
					fewest = min(fewest, s.AppCount(n.Name, r.App))
				}
			}
			if got := s.AppCount(node, r.App); got != fewest {
				t.Fatalf("spread instance %d went to %s holding %d of %s while a feasible node held %d", i, node, got, r.App, fewest)
			}
		}
		s.Assign(c.keys[i], node, r)
		placed[i] = node
	}
	if failed > 0 {
		t.Errorf("%d of %d instances did not fit; the workload is meant to fit", failed, len(c.reqs))
	}
	byName := map[string]*v1.Node{}
	for _, n := range c.nodes {
		byName[n.Metadata.Name] = n
	}
	ports := map[string]bool{}
	for i, node := range placed {
		if node == "" {
			continue
		}
		n, r := byName[node], c.reqs[i]
		if !n.Status.Ready || n.Spec.Unschedulable {
			t.Fatalf("instance %d placed on %s, which is not ready or cordoned", i, node)
		}
		if !matchAll(n.Metadata.Labels, r.Constraints) {
			t.Fatalf("instance %d placed on %s (labels %v) against constraints %v", i, node, n.Metadata.Labels, r.Constraints)
		}
		for _, p := range r.HostPorts {
			k := node + " " + p.String()
			if ports[k] {
				t.Fatalf("host port %s on %s taken twice", p, node)
			}
			ports[k] = true
		}
	}
	for _, n := range c.nodes {
		info := mustNode(t, s, n.Metadata.Name)
		if info.Placed.CPU > info.Allocatable.CPU || info.Placed.Memory > info.Allocatable.Memory || info.Placed.Instances > info.Allocatable.Instances {
			t.Errorf("node %s overcommitted: placed %+v of %+v", info.Name, info.Placed, info.Allocatable)
		}
	}
	again := make([]string, len(c.reqs))
	c.placeAll(again)
	for i := range placed {
		if placed[i] != again[i] {
			t.Fatalf("instance %d went to %s the first time and %s the second", i, placed[i], again[i])
		}
	}
}
