package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gantry-dev/gantry/internal/metrics"
)

// sampler reads every running instance's cgroup counters and the node's
// totals each interval, turns counters into rates, reports them to the
// server's metrics window and keeps the last round for /metrics.
type sampler struct {
	a        *Agent
	interval time.Duration
	// proc is where the proc filesystem is read ("/proc" when empty).
	proc string

	mu      sync.Mutex
	prev    map[string]prevCounters // by container id
	prevCPU cpuTimes
	last    metrics.Report
	// totals are the cumulative counters of the last round, by
	// namespace/name, for Prometheus counters.
	totals map[string]prevCounters
}

type prevCounters struct {
	at       time.Time
	cpuNanos uint64
	// netAt is when rx and tx were read: a failed read keeps the
	// counters of the last good one. Zero while none has succeeded.
	netAt  time.Time
	rx, tx uint64
}

type cpuTimes struct {
	at          time.Time
	busy, total uint64
}

func (s *sampler) run(ctx context.Context) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r := s.sample(ctx, time.Now().UTC())
		s.mu.Lock()
		s.last = r
		s.mu.Unlock()
		if err := s.a.api.Sub(ctx, http.MethodPost, "Node", "", s.a.cfg.NodeName, "metrics", r, nil); err != nil && ctx.Err() == nil {
			s.a.log.Debug("report metrics", "err", err)
		}
	}
}

// sample reads one round at now.
func (s *sampler) sample(ctx context.Context, now time.Time) metrics.Report {
	s.a.mu.Lock()
	workers := make([]*worker, 0, len(s.a.workers))
	for _, w := range s.a.workers {
		workers = append(workers, w)
	}
	s.a.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.prev == nil {
		s.prev = map[string]prevCounters{}
	}
	seen := map[string]bool{}
	var r metrics.Report
	var memSum int64
	for _, w := range workers {
		inst, removing, gone := w.state()
		if removing || gone {
			continue
		}
		st, err := s.a.rt.Stats(ctx, w.id)
		if err != nil {
			continue
		}
		seen[w.id] = true
		p := metrics.Point{Time: now, Memory: int64(st.MemoryWorkingSetBytes), MemoryLimit: int64(st.MemoryLimitBytes), Restarts: w.restarts()}
		prev, havePrev := s.prev[w.id]
		// Without an earlier counter (a new container, or the agent's
		// first round) there is no rate: unknown, not idle.
		p.CPUUnknown = true
		if havePrev {
			// A counter that went back belongs to a container that
			// restarted within the interval: all of it was used since,
			// so it gives at least the rate (read as zero, a hot
			// crash-looping instance would look idle after each restart).
			used := st.CPUUsageNanos
			if used >= prev.cpuNanos {
				used -= prev.cpuNanos
			}
			if secs := now.Sub(prev.at).Seconds(); secs > 0 {
				p.CPU, p.CPUUnknown = float64(used)/1e9/secs, false
			}
		}
		cur := prevCounters{at: now, cpuNanos: st.CPUUsageNanos, netAt: now}
		cur.rx, cur.tx, err = s.netCounters(ctx, w.id)
		switch {
		case err != nil:
			// Keep what was last read, and when: read as zero, the
			// counters would drop in /metrics, and the next rate would be
			// the whole count over one interval. No rate this round.
			s.a.log.Debug("read network counters", "instance", w.key, "err", err)
			cur.netAt, cur.rx, cur.tx = prev.netAt, prev.rx, prev.tx
		case !prev.netAt.IsZero() && cur.rx >= prev.rx && cur.tx >= prev.tx:
			if secs := now.Sub(prev.netAt).Seconds(); secs > 0 {
				p.RxBytes = float64(cur.rx-prev.rx) / secs
				p.TxBytes = float64(cur.tx-prev.tx) / secs
			}
		}
		s.prev[w.id] = cur
		res := inst.Spec.Template.Resources
		limit := res.CPULimit()
		if limit == 0 {
			limit = res.CPU
		}
		r.Instances = append(r.Instances, metrics.InstanceSample{
			Namespace: w.ns, Name: w.name, App: inst.Spec.App, Node: s.a.cfg.NodeName,
			CPULimit: float64(limit) / 1000, Point: p,
		})
		memSum += p.Memory
	}
	for id := range s.prev {
		if !seen[id] {
			delete(s.prev, id)
		}
	}
	s.totals = map[string]prevCounters{}
	for _, w := range workers {
		if p, ok := s.prev[w.id]; ok && seen[w.id] {
			s.totals[w.ns+"/"+w.name] = p
		}
	}
	node := metrics.Point{Time: now, Instances: len(r.Instances), MemoryLimit: int64(s.a.cfg.Capacity.Memory), CPUUnknown: true}
	if busy, total, err := readCPUTimes(s.procDir()); err == nil {
		if frac, ok := metrics.BusyShare(s.prevCPU.busy, s.prevCPU.total, busy, total); ok {
			node.CPU, node.CPUUnknown = frac*float64(s.a.cfg.Capacity.CPU)/1000, false
		}
		s.prevCPU = cpuTimes{at: now, busy: busy, total: total}
	}
	if used, err := hostMemoryUsed(s.procDir()); err == nil {
		node.Memory = used
	} else {
		node.Memory = memSum
	}
	r.Node = metrics.NodeSample{Node: s.a.cfg.NodeName, CPUCapacity: float64(s.a.cfg.Capacity.CPU) / 1000, Point: node}
	return r
}

func (w *worker) restarts() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.status.Restarts
}

func (s *sampler) procDir() string {
	if s.proc == "" {
		return "/proc"
	}
	return s.proc
}

// netCounters reads the byte counters of container id's eth0, in its
// network namespace (both zero if it has no eth0).
func (s *sampler) netCounters(ctx context.Context, id string) (rx, tx uint64, err error) {
	c, err := s.a.rt.Inspect(ctx, id)
	if err != nil {
		return 0, 0, fmt.Errorf("inspect: %w", err)
	}
	if c.Pid == 0 {
		return 0, 0, errors.New("no process running")
	}
	f, err := os.Open(filepath.Join(s.procDir(), strconv.FormatUint(uint64(c.Pid), 10), "net", "dev"))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if !ok || strings.TrimSpace(name) != "eth0" {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) < 9 {
			return 0, 0, fmt.Errorf("net/dev: eth0 has %d fields, want at least 9", len(fields))
		}
		if rx, err = strconv.ParseUint(fields[0], 10, 64); err != nil {
			return 0, 0, fmt.Errorf("net/dev: eth0 receive bytes: %w", err)
		}
		if tx, err = strconv.ParseUint(fields[8], 10, 64); err != nil {
			return 0, 0, fmt.Errorf("net/dev: eth0 transmit bytes: %w", err)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, fmt.Errorf("read net/dev: %w", err)
	}
	return rx, tx, nil
}

// readCPUTimes returns busy and total jiffies from proc/stat.
func readCPUTimes(proc string) (busy, total uint64, err error) {
	b, err := os.ReadFile(filepath.Join(proc, "stat"))
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return parseCPUTimes(line)
}

// parseCPUTimes reads the "cpu" line of /proc/stat: user nice system
// idle iowait irq softirq steal, then guest and guest_nice, which the
// kernel already counts in user and nice and so are left out. Busy is
// all but idle and iowait.
func parseCPUTimes(line string) (busy, total uint64, err error) {
	fields := strings.Fields(line)
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0, 0, fmt.Errorf("unexpected /proc/stat line %q", line)
	}
	fields = fields[1:min(len(fields), 9)]
	for i, f := range fields {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat field %d: %w", i+1, err)
		}
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total, nil
}

// hostMemoryUsed is MemTotal - MemAvailable.
func hostMemoryUsed(proc string) (int64, error) {
	b, err := os.ReadFile(filepath.Join(proc, "meminfo"))
	if err != nil {
		return 0, err
	}
	var total, avail int64
	for _, l := range strings.Split(string(b), "\n") {
		fmt.Sscanf(l, "MemTotal: %d kB", &total)
		fmt.Sscanf(l, "MemAvailable: %d kB", &avail)
	}
	if total == 0 {
		return 0, fmt.Errorf("no MemTotal")
	}
	return (total - avail) << 10, nil
}

// Collector exposes the last sampling round as Prometheus metrics with
// namespace, app, instance and node labels.
func (a *Agent) Collector() prometheus.Collector { return (*agentCollector)(a) }

type agentCollector Agent

var (
	instanceLabels = []string{"namespace", "app", "instance", "node"}
	descCPU        = prometheus.NewDesc("gantry_instance_cpu_usage_cores", "CPU in use by an instance, in cores, over the last sampling interval.", instanceLabels, nil)
	descCPUTotal   = prometheus.NewDesc("gantry_instance_cpu_seconds_total", "CPU time an instance's container has used in its current run.", instanceLabels, nil)
	descMem        = prometheus.NewDesc("gantry_instance_memory_working_set_bytes", "Memory working set of an instance.", instanceLabels, nil)
	descMemLimit   = prometheus.NewDesc("gantry_instance_memory_limit_bytes", "Memory limit of an instance.", instanceLabels, nil)
	descRx         = prometheus.NewDesc("gantry_instance_network_receive_bytes_total", "Bytes an instance received on its network interface.", instanceLabels, nil)
	descTx         = prometheus.NewDesc("gantry_instance_network_transmit_bytes_total", "Bytes an instance sent on its network interface.", instanceLabels, nil)
	descRestarts   = prometheus.NewDesc("gantry_instance_restarts_total", "Times an instance's container was restarted.", instanceLabels, nil)
	descNodeCPU    = prometheus.NewDesc("gantry_node_cpu_usage_cores", "CPU in use on a node, in cores.", []string{"node"}, nil)
	descNodeMem    = prometheus.NewDesc("gantry_node_memory_used_bytes", "Memory in use on a node.", []string{"node"}, nil)
	descNodeInst   = prometheus.NewDesc("gantry_node_instances", "Instances running on a node.", []string{"node"}, nil)
)

func (c *agentCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCPU, descCPUTotal, descMem, descMemLimit, descRx, descTx, descRestarts, descNodeCPU, descNodeMem, descNodeInst} {
		ch <- d
	}
}

func (c *agentCollector) Collect(ch chan<- prometheus.Metric) {
	a := (*Agent)(c)
	if a.sampler == nil {
		return
	}
	a.sampler.mu.Lock()
	r := a.sampler.last
	totals := a.sampler.totals
	a.sampler.mu.Unlock()
	for _, s := range r.Instances {
		l := []string{s.Namespace, s.App, s.Name, s.Node}
		t := totals[s.Namespace+"/"+s.Name]
		if !s.CPUUnknown {
			ch <- prometheus.MustNewConstMetric(descCPU, prometheus.GaugeValue, s.CPU, l...)
		}
		ch <- prometheus.MustNewConstMetric(descCPUTotal, prometheus.CounterValue, float64(t.cpuNanos)/1e9, l...)
		ch <- prometheus.MustNewConstMetric(descMem, prometheus.GaugeValue, float64(s.Memory), l...)
		ch <- prometheus.MustNewConstMetric(descMemLimit, prometheus.GaugeValue, float64(s.MemoryLimit), l...)
		if !t.netAt.IsZero() { // until a read succeeds, the counters are not known
			ch <- prometheus.MustNewConstMetric(descRx, prometheus.CounterValue, float64(t.rx), l...)
			ch <- prometheus.MustNewConstMetric(descTx, prometheus.CounterValue, float64(t.tx), l...)
		}
		ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(s.Restarts), l...)
	}
	if r.Node.Node != "" {
		if !r.Node.CPUUnknown {
			ch <- prometheus.MustNewConstMetric(descNodeCPU, prometheus.GaugeValue, r.Node.CPU, r.Node.Node)
		}
		ch <- prometheus.MustNewConstMetric(descNodeMem, prometheus.GaugeValue, float64(r.Node.Memory), r.Node.Node)
		ch <- prometheus.MustNewConstMetric(descNodeInst, prometheus.GaugeValue, float64(r.Node.Instances), r.Node.Node)
	}
}
