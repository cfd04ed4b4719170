package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/runtime"
)

// statsRuntime answers Stats and Inspect for one container; every other
// method panics through the nil embedded interface.
type statsRuntime struct {
	Runtime
	cpuNanos   uint64
	pid        uint32
	inspectErr error
}

func (f *statsRuntime) Stats(context.Context, string) (runtime.Stats, error) {
	return runtime.Stats{CPUUsageNanos: f.cpuNanos, MemoryWorkingSetBytes: 1 << 20}, nil
}

func (f *statsRuntime) Inspect(_ context.Context, id string) (runtime.Container, error) {
	if f.inspectErr != nil {
		return runtime.Container{}, f.inspectErr
	}
	return runtime.Container{ID: id, Pid: f.pid}, nil
}

// newTestSampler returns a sampler of an agent running one instance,
// default/web-1, reading a proc filesystem in a temporary directory.
func newTestSampler(t *testing.T, rt *statsRuntime) *sampler {
	t.Helper()
	a := &Agent{cfg: Config{NodeName: "n1", Capacity: v1.Capacity{CPU: 2000, Memory: 1 << 30}}, rt: rt,
		log: slog.New(slog.DiscardHandler), workers: map[string]*worker{}}
	inst := &v1.Instance{Metadata: v1.ObjectMeta{Namespace: "default", Name: "web-1", UID: "u1"}, Spec: v1.InstanceSpec{App: "web"}}
	w := newWorker(a, inst)
	a.workers[w.key] = w
	a.sampler = &sampler{a: a, interval: 10 * time.Second, proc: t.TempDir()}
	return a.sampler
}

// writeNetDev writes pid's net/dev with eth0's counters, or removes it.
func writeNetDev(t *testing.T, proc string, pid uint32, rx, tx uint64, present bool) {
	t.Helper()
	dir := filepath.Join(proc, fmt.Sprint(pid), "net")
	if !present {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	dev := "Inter-|   Receive                                                |  Transmit\n" +
		" face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n" +
		"    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0\n" +
		fmt.Sprintf("  eth0: %d      10    0    0    0     0          0         0 %d      10    0    0    0     0       0          0\n", rx, tx)
	if err := os.WriteFile(filepath.Join(dir, "dev"), []byte(dev), 0o644); err != nil {
		t.Fatal(err)
	}
}

// exportedNet returns the network counters the agent's collector exports
// for default/web-1, and whether it exports them.
func exportedNet(t *testing.T, s *sampler) (rx, tx float64, ok bool) {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.a.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "gantry_instance_network_receive_bytes_total":
				rx, ok = m.GetCounter().GetValue(), true
			case "gantry_instance_network_transmit_bytes_total":
				tx = m.GetCounter().GetValue()
			}
		}
	}
	return rx, tx, ok
}

// A round whose network counters cannot be read keeps the last ones: it
// reports no rate, /metrics does not see the counters drop to zero, and
// the next round's rate is over the time since the last good read, not
// the whole count over one interval.
func TestSamplerKeepsNetworkCountersAcrossAFailedRead(t *testing.T) {
	const pid = 4242
	base := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name string
		fail func(rt *statsRuntime, proc string)
	}{
		{"inspect fails", func(rt *statsRuntime, _ string) { rt.inspectErr = errors.New("containerd away") }},
		{"the container has no process", func(rt *statsRuntime, _ string) { rt.pid = 0 }},
		{"net/dev cannot be read", func(_ *statsRuntime, proc string) {
			os.RemoveAll(filepath.Join(proc, fmt.Sprint(pid)))
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			rt := &statsRuntime{pid: pid}
			s := newTestSampler(t, rt)
			round := func(at time.Duration) (rxRate, txRate float64) {
				t.Helper()
				r := s.sample(ctx, base.Add(at))
				s.mu.Lock()
				s.last = r
				s.mu.Unlock()
				if len(r.Instances) != 1 {
					t.Fatalf("round at %s reported %d instances, want 1", at, len(r.Instances))
				}
				return r.Instances[0].RxBytes, r.Instances[0].TxBytes
			}

			writeNetDev(t, s.proc, pid, 1000, 500, true)
			round(0)
			if rx, tx, ok := exportedNet(t, s); !ok || rx != 1000 || tx != 500 {
				t.Fatalf("after the first read: exported %v/%v (%v), want 1000/500", rx, tx, ok)
			}

			tt.fail(rt, s.proc)
			if rx, tx := round(10 * time.Second); rx != 0 || tx != 0 {
				t.Fatalf("failed read reported rates %v/%v, want none", rx, tx)
			}
			if rx, tx, ok := exportedNet(t, s); !ok || rx != 1000 || tx != 500 {
				t.Fatalf("after the failed read: exported %v/%v (%v), want the last good 1000/500", rx, tx, ok)
			}

			*rt = statsRuntime{pid: pid}
			writeNetDev(t, s.proc, pid, 3000, 1500, true)
			if rx, tx := round(20 * time.Second); rx != 100 || tx != 50 {
				t.Fatalf("after recovery: rates %v/%v B/s, want 100/50 (2000 and 1000 bytes over the 20s since the last read)", rx, tx)
			}
			if rx, tx, ok := exportedNet(t, s); !ok || rx != 3000 || tx != 1500 {
				t.Fatalf("after recovery: exported %v/%v (%v), want 3000/1500", rx, tx, ok)
			}
		})
	}
	t.Run("counters never read are not exported", func(t *testing.T) {
		s := newTestSampler(t, &statsRuntime{inspectErr: errors.New("containerd away")})
		r := s.sample(context.Background(), base)
		s.mu.Lock()
		s.last = r
		s.mu.Unlock()
		if rx, tx, ok := exportedNet(t, s); ok {
			t.Fatalf("exported %v/%v before any read succeeded", rx, tx)
		}
	})
}

// Node CPU counts the first eight fields of /proc/stat's cpu line:
// guest and guest_nice are already in user and nice.
func TestParseCPUTimesLeavesOutGuestTime(t *testing.T) {
	for _, tt := range []struct {
		name        string
		line        string
		busy, total uint64
		wantErr     bool
	}{
		{"guest and guest_nice are not counted again", "cpu  100 20 30 800 40 5 5 10 60 7", 170, 1010, false},
		{"an older kernel without steal or guest", "cpu  100 20 30 800 40 5 5", 160, 1000, false},
		{"a line that is not the cpu total", "cpu0 100 20 30 800 40", 0, 0, true},
		{"a field that is not a number", "cpu  100 x 30 800 40", 0, 0, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			busy, total, err := parseCPUTimes(tt.line)
			if (err != nil) != tt.wantErr || busy != tt.busy || total != tt.total {
				t.Fatalf("parseCPUTimes(%q) = %d, %d, %v; want %d, %d, error %v", tt.line, busy, total, err, tt.busy, tt.total, tt.wantErr)
			}
		})
	}
}

// A container that restarted between two rounds has a CPU counter that
// went back; the round reported a rate of 0, so a hot, crash-looping
// instance looked idle after each restart (a cpu alert rule resolved and
// fired again). All of the new count was used within the interval.
func TestSamplerCountsCPUOfAContainerThatRestarted(t *testing.T) {
	const pid = 4243
	base := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	rt := &statsRuntime{pid: pid, cpuNanos: 50e9}
	s := newTestSampler(t, rt)
	writeNetDev(t, s.proc, pid, 0, 0, true)
	ctx := context.Background()
	for _, tt := range []struct {
		at      time.Duration
		counter uint64
		want    float64
	}{
		{0, 50e9, 0},                 // no earlier round: no rate
		{10 * time.Second, 60e9, 1},  // 10 s of CPU in 10 s
		{20 * time.Second, 8e9, 0.8}, // restarted: 8 s since, within the 10 s
	} {
		rt.cpuNanos = tt.counter
		r := s.sample(ctx, base.Add(tt.at))
		if len(r.Instances) != 1 {
			t.Fatalf("round at %s reported %d instances, want 1", tt.at, len(r.Instances))
		}
		if got := r.Instances[0].CPU; got != tt.want {
			t.Errorf("round at %s, counter %d: cpu %v, want %v", tt.at, tt.counter, got, tt.want)
		}
	}
}
