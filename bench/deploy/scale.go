package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// cpuWindow is the CPU the processes of one cluster used over a window.
type cpuWindow struct {
	label       string
	window      time.Duration
	used        map[string]time.Duration // by process group
	procs       map[string]int
	machineBusy float64 // share of all cores busy, whole machine
	load        string
	rss         int64 // gantry up's resident memory at the end
}

// pct is a group's CPU as a percentage of one core.
func (cw cpuWindow) pct(group string) float64 {
	return 100 * cw.used[group].Seconds() / cw.window.Seconds()
}

// measureCPU reads utime+stime of the cluster's processes before and after
// the window. Processes that start or end inside it are not counted (in
// a steady state there are none).
func measureCPU(ctx context.Context, c *cluster, label string, window time.Duration) (cpuWindow, error) {
	groups := procGroups(c.pid(), c.dir, c.containerdSocket())
	before := map[string]map[int]time.Duration{}
	for g, pids := range groups {
		before[g] = cpuOf(pids)
	}
	b0, t0 := machineCPU()
	start := time.Now()
	select {
	case <-time.After(window):
	case <-ctx.Done():
		return cpuWindow{}, ctx.Err()
	}
	elapsed := time.Since(start)
	b1, t1 := machineCPU()
	cw := cpuWindow{label: label, window: elapsed, used: map[string]time.Duration{}, procs: map[string]int{},
		machineBusy: 100 * float64(b1-b0) / float64(max(1, t1-t0)), load: loadAvg(), rss: procRSS(c.pid())}
	for g, pids := range groups {
		after := cpuOf(pids)
		for pid, a := range after {
			if b, ok := before[g][pid]; ok {
				cw.used[g] += a - b
				cw.procs[g]++
			}
		}
	}
	if _, ok := cw.used["gantry up"]; !ok {
		return cw, fmt.Errorf("gantry up (pid %d) went away during the CPU window", c.pid())
	}
	return cw, nil
}

// fleetResult is the start of one App scaled to many instances.
type fleetResult struct {
	interval             string
	n                    int
	first, p50, p90, all time.Duration // apply returned -> Running, per instance
	createdAll           time.Duration // apply returned -> last instance created
	bindAll              time.Duration // apply returned -> last instance bound
	startBusy            float64       // machine CPU busy while they started
	segs                 map[string]dist
	burstCPU             []burstShare  // CPU spent from apply to all Running
	teardown             time.Duration // delete -> last instance gone
	idle, steady         cpuWindow
}

// burstShare is the CPU one kind of process spent on a burst of starts.
type burstShare struct {
	what string
	cpu  time.Duration
}

// burstCPU attributes the CPU of a burst of starts: gantry up and
// containerd (and the children they reaped: CNI plugins and iptables for
// gantry up, the shim's start step for containerd) by difference, the
// shims (with the runc runs they reaped) and log drivers, all new, by
// their totals.
type burstCPU struct {
	gantry, gantryKids, ctrd, ctrdKids time.Duration
	ctrdPID                            int
}

func startBurstCPU(c *cluster) burstCPU {
	var b burstCPU
	b.gantry, b.gantryKids, _ = procCPUWithChildren(c.pid())
	if pids := procGroups(c.pid(), c.dir, c.containerdSocket())["containerd"]; len(pids) == 1 {
		b.ctrdPID = pids[0]
		b.ctrd, b.ctrdKids, _ = procCPUWithChildren(b.ctrdPID)
	}
	return b
}

func (b burstCPU) end(c *cluster) []burstShare {
	g, gk, _ := procCPUWithChildren(c.pid())
	out := []burstShare{
		{"gantry up (server and agent)", g - b.gantry},
		{"gantry up's reaped children (CNI plugins, iptables)", gk - b.gantryKids},
	}
	if b.ctrdPID != 0 {
		cd, ck, _ := procCPUWithChildren(b.ctrdPID)
		out = append(out, burstShare{"containerd", cd - b.ctrd}, burstShare{"containerd's reaped children (shim start)", ck - b.ctrdKids})
	}
	groups := procGroups(c.pid(), c.dir, c.containerdSocket())
	var shims, logs time.Duration
	for _, p := range groups["shims"] {
		self, kids, _ := procCPUWithChildren(p)
		shims += self + kids
	}
	for _, p := range groups["log drivers"] {
		self, _, _ := procCPUWithChildren(p)
		logs += self
	}
	return append(out, burstShare{fmt.Sprintf("shims, with the runc runs they reaped (%d)", len(groups["shims"])), shims},
		burstShare{fmt.Sprintf("log drivers (%d)", len(groups["log drivers"])), logs})
}

const netSegment = "  of which network.Setup (debug log)"

// fleetSegments names the per-instance segments of a fleet start, in
// order.
var fleetSegments = []string{
	"apply returned -> instance seen",
	"instance seen -> bound seen",
	"bound -> snapshot prepared",
	netSegment,
	"snapshot -> container record",
	"container record -> task created",
	"task created -> task started",
	"task started -> startedAt",
	"startedAt -> Running seen",
}

// runScale starts opts.instances instances of one App on the node and
// measures the CPU of the cluster's processes with none and with all of
// them running steady.
func runScale(ctx context.Context, c *cluster, opts options, interval string, w io.Writer) (fleetResult, error) {
	res := fleetResult{interval: interval, n: opts.instances, segs: map[string]dist{}}
	if err := c.pushBusybox(ctx, benchNS+"/busybox:v1"); err != nil {
		return res, fmt.Errorf("push busybox: %w", err)
	}
	tr, err := startTracker(ctx, c.api, benchNS)
	if err != nil {
		return res, err
	}
	ev, closeEv, err := startCtrEvents(ctx, c.containerdSocket())
	if err != nil {
		return res, err
	}
	defer closeEv()
	r := &latencyRun{c: c, tr: tr, ev: ev}
	// Pull the image first: the instances are measured with it present.
	warm, err := r.deploy(ctx, "warmup", false)
	if err != nil {
		return res, fmt.Errorf("warm-up deploy: %w", err)
	}
	if err := probeImageChecks(ctx, c, warm.inst.image, opts.instances, w); err != nil {
		return res, fmt.Errorf("image checks: %w", err)
	}
	if err := burstFloor(ctx, c, ev, warm.inst.image, opts.logDriver, opts.instances, w); err != nil {
		return res, err
	}
	fmt.Fprintf(w, "[%s] idle: settling %s, then measuring CPU for %s with 0 instances\n", interval, opts.settle, opts.window)
	sleepCtx(ctx, opts.settle)
	wait := profileDuring(ctx, c, opts.profileDir, interval+"-0-instances", opts.window)
	if res.idle, err = measureCPU(ctx, c, "0 instances", opts.window); err != nil {
		return res, err
	}
	if err := wait(); err != nil {
		return res, err
	}

	a := tr.expect("fleet", opts.instances)
	obj, err := appManifest("fleet", opts.instances)
	if err != nil {
		return res, err
	}
	fmt.Fprintf(w, "[%s] applying fleet with %d replicas (load %s)\n", interval, opts.instances, loadAvg())
	busy0, total0 := machineCPU()
	bc := startBurstCPU(c)
	if _, err := c.api.Apply(ctx, obj); err != nil {
		return res, fmt.Errorf("apply fleet: %w", err)
	}
	applied := time.Now()
	if err := tr.wait(ctx, a.allRunning, 5*time.Minute, fmt.Sprintf("%d instances Running", opts.instances)); err != nil {
		return res, err
	}
	busy1, total1 := machineCPU()
	res.burstCPU = bc.end(c)
	res.startBusy = 100 * float64(busy1-busy0) / float64(max(1, total1-total0))
	var run []time.Duration
	segs := map[string][]time.Duration{}
	for _, it := range tr.snapshot("fleet") {
		run = append(run, it.running.Sub(applied))
		res.createdAll = max(res.createdAll, it.created.Sub(applied))
		res.bindAll = max(res.bindAll, it.bound.Sub(applied))
		ct := ev.get(containerID(it.key))
		for _, sp := range []struct {
			name     string
			from, to time.Time
		}{
			{"apply returned -> instance seen", applied, it.created},
			{"instance seen -> bound seen", it.created, it.bound},
			{"bound -> snapshot prepared", it.bound, ct.snapshot},
			{"snapshot -> container record", ct.snapshot, ct.container},
			{"container record -> task created", ct.container, ct.taskCreate},
			{"task created -> task started", ct.taskCreate, ct.taskStart},
			{"task started -> startedAt", ct.taskStart, it.startedAt},
			{"startedAt -> Running seen", it.startedAt, it.running},
		} {
			if !sp.from.IsZero() && !sp.to.IsZero() {
				segs[sp.name] = append(segs[sp.name], sp.to.Sub(sp.from))
			}
		}
	}
	for name, ds := range segs {
		res.segs[name] = summarize(ds)
	}
	// At debug level the log has each instance's network.Setup time.
	if logs, err := readLogTimings(c.logPath()); err == nil {
		var netw []time.Duration
		for _, it := range tr.snapshot("fleet") {
			if t := logs[it.key]; t.network > 0 {
				netw = append(netw, t.network)
			}
		}
		if len(netw) > 0 {
			res.segs[netSegment] = summarize(netw)
		}
	}
	d := summarize(run)
	res.first, res.p50, res.p90, res.all = d.min, d.p50, d.p90, d.max
	fmt.Fprintf(w, "[%s] all %d Running %s after apply returned; settling %s, then measuring CPU for %s\n",
		interval, opts.instances, res.all.Round(time.Millisecond), opts.settle, opts.window)
	sleepCtx(ctx, opts.settle)
	wait = profileDuring(ctx, c, opts.profileDir, fmt.Sprintf("%s-%d-instances", interval, opts.instances), opts.window)
	if res.steady, err = measureCPU(ctx, c, fmt.Sprintf("%d instances", opts.instances), opts.window); err != nil {
		return res, err
	}
	if err := wait(); err != nil {
		return res, err
	}
	start := time.Now()
	if err := r.remove(ctx, "fleet"); err != nil {
		return res, err
	}
	res.teardown = time.Since(start)
	return res, nil
}

// runServerOnly measures the CPU of gantry up --no-agent, idle: the
// server's share of what gantry up uses with an agent and no instances.
func runServerOnly(ctx context.Context, c *cluster, opts options, w io.Writer) (cpuWindow, error) {
	fmt.Fprintf(w, "[server only] settling %s, then measuring CPU for %s\n", opts.settle, opts.window)
	sleepCtx(ctx, opts.settle)
	wait := profileDuring(ctx, c, opts.profileDir, "server-only", opts.window)
	cw, err := measureCPU(ctx, c, "server only (--no-agent)", opts.window)
	if err != nil {
		return cw, err
	}
	return cw, wait()
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
}

func printScale(w io.Writer, rs []fleetResult, server *cpuWindow) {
	if len(rs) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%d instances of one App on one node (busybox sleep, 10m / 16Mi each), from apply returned (s)\n", rs[0].n)
	rows := [][]string{{"--sample-interval", "first Running", "p50", "p90", "all Running", "all created", "all bound", "machine busy meanwhile", "delete -> all gone"}}
	sec := func(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()) }
	for _, r := range rs {
		rows = append(rows, []string{r.interval, sec(r.first), sec(r.p50), sec(r.p90), sec(r.all), sec(r.createdAll), sec(r.bindAll),
			fmt.Sprintf("%.0f%%", r.startBusy), sec(r.teardown)})
	}
	table(w, rows)
	fmt.Fprintln(w, "target: all Running in under 20 s")
	fmt.Fprintf(w, "\nPer-instance segments of the %d starts, ms p50 / p90 / max (queueing shows up here)\n", rs[0].n)
	hdr := []string{"segment"}
	for _, r := range rs {
		hdr = append(hdr, "--sample-interval "+r.interval)
	}
	rows = [][]string{hdr}
	for _, name := range fleetSegments {
		row := []string{name}
		for _, r := range rs {
			d, ok := r.segs[name]
			if !ok {
				row = append(row, "- (needs -scale-log-level debug)")
				continue
			}
			row = append(row, fmt.Sprintf("%s / %s / %s", ms(d.p50), ms(d.p90), ms(d.max)))
		}
		rows = append(rows, row)
	}
	table(w, rows)

	fmt.Fprintf(w, "\nCPU spent on the burst, from apply to all %d Running: CPU-seconds (ms per instance)\n", rs[0].n)
	hdr = []string{"process"}
	for _, r := range rs {
		hdr = append(hdr, "--sample-interval "+r.interval)
	}
	rows = [][]string{hdr}
	for k := range rs[0].burstCPU {
		row := []string{rs[0].burstCPU[k].what}
		for _, r := range rs {
			if k >= len(r.burstCPU) {
				row = append(row, "-")
				continue
			}
			b := r.burstCPU[k]
			row = append(row, fmt.Sprintf("%.2f (%.0f)", b.cpu.Seconds(), float64(b.cpu.Milliseconds())/float64(r.n)))
		}
		rows = append(rows, row)
	}
	totals := []string{"total"}
	for _, r := range rs {
		var t time.Duration
		for _, b := range r.burstCPU {
			t += b.cpu
		}
		totals = append(totals, fmt.Sprintf("%.2f (%.0f)", t.Seconds(), float64(t.Milliseconds())/float64(r.n)))
	}
	table(w, append(rows, totals))

	groups := map[string]bool{}
	for _, r := range rs {
		for _, cw := range []cpuWindow{r.idle, r.steady} {
			for g := range cw.used {
				groups[g] = true
			}
		}
	}
	order := []string{"gantry up"}
	var rest []string
	for g := range groups {
		if g != "gantry up" {
			rest = append(rest, g)
		}
	}
	sort.Strings(rest)
	order = append(order, rest...)

	fmt.Fprintf(w, "\nCPU over a steady window, %% of one core (utime+stime from /proc/PID/stat; gantry up = API server, etcd, controllers, registry, DNS and the agent in one process)\n")
	hdr = []string{"--sample-interval", "state", "window"}
	for _, g := range order {
		hdr = append(hdr, g)
	}
	hdr = append(hdr, "gantry up RSS MB", "machine busy", "load avg (end)")
	rows = [][]string{hdr}
	type labelled struct {
		interval string
		cw       cpuWindow
	}
	var windows []labelled
	if server != nil {
		windows = append(windows, labelled{"-", *server})
	}
	for _, r := range rs {
		windows = append(windows, labelled{r.interval, r.idle}, labelled{r.interval, r.steady})
	}
	for _, l := range windows {
		cw := l.cw
		row := []string{l.interval, cw.label, cw.window.Round(time.Second).String()}
		for _, g := range order {
			if cw.procs[g] == 0 {
				row = append(row, "-")
				continue
			}
			cell := fmt.Sprintf("%.2f%%", cw.pct(g))
			if g != "gantry up" {
				cell += fmt.Sprintf(" (%d)", cw.procs[g])
			}
			row = append(row, cell)
		}
		row = append(row, fmt.Sprintf("%.0f", float64(cw.rss)/(1<<20)),
			fmt.Sprintf("%.0f%% of %d cores", cw.machineBusy, numCPU()), strings.ReplaceAll(cw.load, " ", "/"))
		rows = append(rows, row)
	}
	table(w, rows)
	for _, r := range rs {
		fmt.Fprintf(w, "[%s] gantry up with %d instances minus with 0: %+.2f%% of a core; containerd: %+.2f%%\n",
			r.interval, r.n, r.steady.pct("gantry up")-r.idle.pct("gantry up"), r.steady.pct("containerd")-r.idle.pct("containerd"))
		if server != nil {
			fmt.Fprintf(w, "[%s] gantry up with 0 instances minus gantry up --no-agent: %+.2f%% of a core (the idle agent and its containerd supervision)\n",
				r.interval, r.idle.pct("gantry up")-server.pct("gantry up"))
		}
	}
	fmt.Fprintln(w, "targets: agent under 2% of a core with 100 steady instances (issue 3); under 3% with 100 instances sampled every 10 s (issue 7)")
}
