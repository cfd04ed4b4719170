package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	ctrd "github.com/containerd/containerd/v2/client"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/runtime"
)

const benchNS = "default"

// appManifest is the App every deploy applies: busybox sleeping, small
// requests, and no drain or stop grace so that deleting it is quick (a
// sleep as PID 1 ignores SIGTERM and would hold each delete for the
// default 10 s grace).
func appManifest(name string, replicas int) (v1.Object, error) {
	return v1.DecodeManifest([]byte(fmt.Sprintf(`kind: App
name: %s
namespace: %s
image: busybox:v1
command: ["/bin/sleep", "3600"]
replicas: %d
resources: {cpu: 10m, memory: 16Mi}
strategy: {drainDelay: 0s}
stopGracePeriod: 0s
`, name, benchNS, replicas)))
}

// deployResult is one measured deploy of a 1-replica App.
type deployResult struct {
	applyStart, applyDone time.Time
	inst                  instTimes
	ctr                   ctrTimes
	logs                  logTimings
}

// directResult is one container created and started straight on
// containerd (the floor) or through Gantry's runtime driver.
type directResult struct {
	start, done time.Time
	ctr         ctrTimes
}

type latencyRun struct {
	c     *cluster
	tr    *tracker
	ev    *ctrEvents
	drv   *runtime.Driver // log driver: gantry __log-driver, the fallback
	small *runtime.Driver // log driver: gantry-logdriver, as the agent runs it
	ref   string          // the image as containerd names it
	// conflicts counts App deletes refused with 409 and retried.
	conflicts int
}

// driverVariant is one way of running Gantry's runtime driver alone.
type driverVariant struct {
	name string
	drv  func(r *latencyRun) *runtime.Driver
	log  bool
}

var driverVariants = []driverVariant{
	{"runtime driver, log driver = gantry __log-driver (fallback)", func(r *latencyRun) *runtime.Driver { return r.drv }, true},
	{"runtime driver, log driver = gantry-logdriver (as the agent)", func(r *latencyRun) *runtime.Driver { return r.small }, true},
	{"runtime driver, no log file (NullIO)", func(r *latencyRun) *runtime.Driver { return r.drv }, false},
}

// deploy applies a 1-replica App and waits for its instance to be
// Running; unless keep, it then deletes the App and waits until the
// instance is gone, so that the next deploy starts on a quiet node.
func (r *latencyRun) deploy(ctx context.Context, name string, keep bool) (deployResult, error) {
	a := r.tr.expect(name, 1)
	obj, err := appManifest(name, 1)
	if err != nil {
		return deployResult{}, err
	}
	var res deployResult
	res.applyStart = time.Now()
	if _, err := r.c.api.Apply(ctx, obj); err != nil {
		return res, fmt.Errorf("apply %s: %w", name, err)
	}
	res.applyDone = time.Now()
	if err := r.tr.wait(ctx, a.allRunning, 60*time.Second, name+" Running"); err != nil {
		return res, err
	}
	insts := r.tr.snapshot(name)
	if len(insts) != 1 {
		return res, fmt.Errorf("app %s has %d instances, want 1", name, len(insts))
	}
	res.inst = insts[0]
	res.ctr = r.ev.get(containerID(res.inst.key))
	if keep {
		return res, nil
	}
	return res, r.remove(ctx, name)
}

func (r *latencyRun) remove(ctx context.Context, name string) error {
	// A delete races with the controllers' status writes to the App and
	// fails with a conflict then; like a user, try again.
	for attempt := 0; ; attempt++ {
		_, err := r.c.api.Delete(ctx, "App", benchNS, name)
		if err == nil {
			break
		}
		if !errors.Is(err, v1.ErrConflict) || attempt == 20 {
			return fmt.Errorf("delete app %s: %w", name, err)
		}
		r.conflicts++
		sleepCtx(ctx, 20*time.Millisecond)
	}
	r.tr.markDeleting(name)
	r.tr.mu.Lock()
	gone := r.tr.apps[name].gone
	r.tr.mu.Unlock()
	return r.tr.wait(ctx, gone, 120*time.Second, name+" deleted")
}

// floor creates and starts the same image straight through containerd's
// client (runtime.BaselineCreateStart), then removes it untimed.
func (r *latencyRun) floor(ctx context.Context, id string) (directResult, error) {
	var res directResult
	res.start = time.Now()
	remove, err := r.drv.BaselineCreateStart(ctx, r.ref, id, "/bin/sleep", "3600")
	res.done = time.Now()
	if err != nil {
		return res, err
	}
	res.ctr = r.ev.get(id)
	return res, remove(ctx)
}

// driver creates and starts the same container through Gantry's runtime
// driver as the agent configures it (secure defaults, limits, the binary
// log driver) but with no network and no control plane.
func (r *latencyRun) driver(ctx context.Context, v driverVariant, id string) (directResult, error) {
	var res directResult
	drv := v.drv(r)
	spec := &runtime.ContainerSpec{
		ID: id, Image: r.ref, Command: []string{"/bin/sleep", "3600"},
		Resources: runtime.Resources{CPURequestMillis: 10, MemoryLimitBytes: 16 << 20},
	}
	if v.log {
		spec.LogPath = filepath.Join(r.c.dir, "bench-logs", id+".log")
	}
	res.start = time.Now()
	if err := drv.Create(ctx, spec); err != nil {
		return res, err
	}
	if _, err := drv.Start(ctx, id); err != nil {
		return res, err
	}
	res.done = time.Now()
	res.ctr = r.ev.get(id)
	if err := drv.Stop(ctx, id, 0); err != nil {
		return res, err
	}
	return res, drv.Remove(ctx, id)
}

// containerID is how the agent names an instance's container.
func containerID(key string) string {
	b := []byte(key)
	for i, c := range b {
		if c == '/' {
			b[i] = '_'
		}
	}
	return string(b)
}

// direct is one way of creating and starting the same container without
// the control plane, run next to every deploy.
type direct struct {
	name  string // as printed
	short string // in the segment table
	run   func(ctx context.Context, id string) (directResult, error)
}

// runLatency measures opts.deploys deploys of a 1-replica App with the
// image already on the node, interleaved with as many runs of the floor
// and of its variants, and prints the tables.
func runLatency(ctx context.Context, c *cluster, opts options, accumulate bool, w io.Writer) error {
	if err := c.pushBusybox(ctx, benchNS+"/busybox:v1"); err != nil {
		return fmt.Errorf("push busybox: %w", err)
	}
	tr, err := startTracker(ctx, c.api, benchNS)
	if err != nil {
		return err
	}
	ev, closeEv, err := startCtrEvents(ctx, c.containerdSocket())
	if err != nil {
		return err
	}
	defer closeEv()
	drv, err := runtime.New(ctx, runtime.Config{Address: c.containerdSocket(), LogDriver: []string{c.bin, "__log-driver"}}, nil)
	if err != nil {
		return err
	}
	defer drv.Close()
	small, err := runtime.New(ctx, runtime.Config{Address: c.containerdSocket(), LogDriver: []string{opts.logDriver}}, nil)
	if err != nil {
		return err
	}
	defer small.Close()
	cl, err := ctrd.New(c.containerdSocket(), ctrd.WithDefaultNamespace(runtime.DefaultNamespace))
	if err != nil {
		return err
	}
	defer cl.Close()
	r := &latencyRun{c: c, tr: tr, ev: ev, drv: drv, small: small}
	directs := []direct{
		{"floor: BaselineCreateStart (containerd client)", "floor", r.floor},
		{"floor + default seccomp profile", "floor+seccomp", func(ctx context.Context, id string) (directResult, error) {
			return r.floorSeccomp(ctx, cl, id)
		}},
	}
	for j, v := range driverVariants {
		directs = append(directs, direct{v.name + ": Create+Start", fmt.Sprintf("driver %d", j+1), func(ctx context.Context, id string) (directResult, error) {
			return r.driver(ctx, v, id)
		}})
	}

	// Warm-up, not counted: the first deploy pulls the image, the first
	// direct runs warm containerd and the page cache.
	warm, err := r.deploy(ctx, "warmup", false)
	if err != nil {
		return fmt.Errorf("warm-up deploy: %w", err)
	}
	if r.ref, err = runtime.NormalizeRef(warm.inst.image); err != nil {
		return err
	}
	for i := range 2 {
		for j, d := range directs {
			if _, err := d.run(ctx, fmt.Sprintf("direct%d-warm-%d", j, i)); err != nil {
				return fmt.Errorf("warm-up %s: %w", d.short, err)
			}
		}
	}
	time.Sleep(time.Second)

	fmt.Fprintf(w, "load average before: %s\n", loadAvg())
	busy0, total0 := machineCPU()
	began := time.Now()
	var deps []deployResult
	results := make([][]directResult, len(directs))
	for i := range opts.deploys {
		steps := []func() error{
			func() error {
				d, err := r.deploy(ctx, fmt.Sprintf("lat-%03d", i), accumulate)
				deps = append(deps, d)
				return err
			},
		}
		for j, d := range directs {
			steps = append(steps, func() error {
				res, err := d.run(ctx, fmt.Sprintf("direct%d-%03d", j, i))
				results[j] = append(results[j], res)
				if err != nil {
					return fmt.Errorf("%s: %w", d.short, err)
				}
				return nil
			})
		}
		// Rotate which goes first, so that none always runs right after
		// another's cleanup.
		k := i % len(steps)
		steps = append(steps[k:], steps[:k]...)
		for _, step := range steps {
			if err := step(); err != nil {
				return err
			}
			time.Sleep(opts.pause)
		}
	}
	busy1, total1 := machineCPU()
	elapsed := time.Since(began)
	fmt.Fprintf(w, "load average after:  %s; machine CPU busy during the run: %.0f%% of %d cores; run took %s\n",
		loadAvg(), 100*float64(busy1-busy0)/float64(max(1, total1-total0)), numCPU(), elapsed.Round(time.Second))

	if accumulate {
		// Clean up all at once; not measured.
		for i := range opts.deploys {
			if err := r.remove(ctx, fmt.Sprintf("lat-%03d", i)); err != nil {
				return err
			}
		}
	}
	logs, err := readLogTimings(c.logPath())
	if err != nil {
		return err
	}
	for i := range deps {
		deps[i].logs = logs[deps[i].inst.key]
	}
	printLatency(w, deps, directs, results, accumulate)
	if r.conflicts > 0 {
		fmt.Fprintf(w, "note: %d App deletes were refused with 409 Conflict (a controller wrote the App at the same time) and retried\n", r.conflicts)
	}
	return nil
}

func printLatency(w io.Writer, deps []deployResult, directs []direct, results [][]directResult, accumulate bool) {
	var total, applyCall []time.Duration
	for _, d := range deps {
		total = append(total, d.inst.running.Sub(d.applyDone))
		applyCall = append(applyCall, d.applyDone.Sub(d.applyStart))
	}
	durs := func(rs []directResult) []time.Duration {
		var out []time.Duration
		for _, r := range rs {
			out = append(out, r.done.Sub(r.start))
		}
		return out
	}
	g, f, ac := summarize(total), summarize(durs(results[0])), summarize(applyCall)
	mode := "each App deleted (and its instance gone) before the next deploy"
	if accumulate {
		mode = fmt.Sprintf("Apps accumulate: deploy i runs next to the i-1 instances before it (up to %d)", len(deps))
	}
	fmt.Fprintf(w, "\nDeploy latency, image present, %d deploys of a 1-replica busybox App; %s (ms)\n", len(deps), mode)
	row := func(name string, d dist) []string {
		return []string{name, fmt.Sprint(d.n), ms(d.min), ms(d.p50), ms(d.p90), ms(d.p99), ms(d.max), ms(d.mean)}
	}
	rows := [][]string{
		{"path", "n", "min", "p50", "p90", "p99", "max", "mean"},
		row("gantry: apply returned -> Running (watch)", g),
	}
	for j, d := range directs {
		rows = append(rows, row(d.name, summarize(durs(results[j]))))
	}
	rows = append(rows, row("(the apply call itself, not in the above)", ac))
	table(w, rows)
	fmt.Fprintf(w, "ratio gantry/floor: p50 %.2f, p99 %.2f (target <= 1.5); gantry p99 %s ms (target < 500)\n",
		ratio(g.p50, f.p50), ratio(g.p99, f.p99), ms(g.p99))

	// Where the time goes, from the watch, containerd's events and the
	// debug log.
	type seg struct {
		name string
		ds   []time.Duration
	}
	var gs []*seg
	add := func(name string, d time.Duration, ok bool) {
		for _, s := range gs {
			if s.name == name {
				if ok {
					s.ds = append(s.ds, d)
				}
				return
			}
		}
		s := &seg{name: name}
		if ok {
			s.ds = append(s.ds, d)
		}
		gs = append(gs, s)
	}
	span := func(name string, from, to time.Time) {
		add(name, to.Sub(from), !from.IsZero() && !to.IsZero())
	}
	for _, d := range deps {
		i, c := d.inst, d.ctr
		span("apply returned -> instance seen (rollout controller)", d.applyDone, i.created)
		span("instance seen -> bound seen (scheduler)", i.created, i.bound)
		add("  scheduler's own place+bind write (debug log)", d.logs.bind, d.logs.bind > 0)
		span("bound -> snapshot prepared (agent: watch, netns, image check, files)", i.bound, c.snapshot)
		add("  network.Setup (debug log)", d.logs.network, d.logs.network > 0)
		span("snapshot -> container record (containerd NewContainer)", c.snapshot, c.container)
		span("container record -> task created (shim, log driver, runc create)", c.container, c.taskCreate)
		span("task created -> task started (network and policy wait, runc start)", c.taskCreate, c.taskStart)
		span("task started -> startedAt (Start returns to the agent)", c.taskStart, i.startedAt)
		span("startedAt -> Running seen (status write + watch)", i.startedAt, i.running)
	}
	fmt.Fprintf(w, "\nWhere a deploy's time goes (ms; containerd event and agent timestamps, same clock)\n")
	rows = [][]string{{"gantry segment", "n", "p50", "p90", "max"}}
	for _, s := range gs {
		d := summarize(s.ds)
		rows = append(rows, []string{s.name, fmt.Sprint(d.n), ms(d.p50), ms(d.p90), ms(d.max)})
	}
	table(w, rows)

	// The same segments for the direct paths, side by side (p50).
	names := []string{"call -> snapshot prepared", "snapshot -> container record",
		"container record -> task created", "task created -> task started", "task started -> call returns", "total"}
	hdr := []string{"direct segment, p50 (p90)"}
	for _, d := range directs {
		hdr = append(hdr, d.short)
	}
	rows = [][]string{hdr}
	cols := make([][]string, len(directs))
	for j := range directs {
		segs := make([][]time.Duration, len(names))
		for _, r := range results[j] {
			c := r.ctr
			if c.snapshot.IsZero() || c.container.IsZero() || c.taskCreate.IsZero() || c.taskStart.IsZero() {
				continue
			}
			for k, d := range []time.Duration{c.snapshot.Sub(r.start), c.container.Sub(c.snapshot),
				c.taskCreate.Sub(c.container), c.taskStart.Sub(c.taskCreate), r.done.Sub(c.taskStart), r.done.Sub(r.start)} {
				segs[k] = append(segs[k], d)
			}
		}
		for k := range names {
			d := summarize(segs[k])
			cols[j] = append(cols[j], fmt.Sprintf("%s (%s)", ms(d.p50), ms(d.p90)))
		}
	}
	for k, n := range names {
		row := []string{n}
		for j := range directs {
			row = append(row, cols[j][k])
		}
		rows = append(rows, row)
	}
	table(w, rows)
	fmt.Fprintln(w, "driver 1 = runtime driver with the fallback log driver gantry __log-driver; 2 = as the agent runs it, log driver gantry-logdriver; 3 = no log file")
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
