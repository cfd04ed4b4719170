// Command ingress compares Gantry's ingress with Debian's nginx proxying
// the same backend, side by side in one run:
//
//	go run ./bench/ingress                  # wrk -t2 -c64, 5 rounds of 10s
//	go run ./bench/ingress -duration 5s -rounds 3 -latency-duration 10s
//
// It starts a small Go HTTP backend, Gantry's ingress (serving a
// synthetic discovery snapshot that points at the backend) and nginx
// (worker_processes auto, upstream keepalive, access log off, like
// Gantry's) with its own config, pid and temp directories in a temp dir,
// each in its own process. For each target (the backend direct, nginx,
// gantry) it measures maximum throughput with wrk, closed loop with the
// same threads and connections, in interleaved rounds (the median counts),
// together with the target process's CPU time per request; then latency
// with bench/loadgen, open loop at half the lower proxy maximum and at a
// light fixed rate, in interleaved slices. It prints a table and the two
// figures the issue asks for: throughput ≥ 0.8× nginx, added p99 (through
// the proxy minus direct) ≤ 1 ms at half of maximum load.
//
// Everything shares the machine, so the figures move with whatever else
// runs on it; CPU per request is the steadiest of them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/bench/loadgen"
	"github.com/gantry-dev/gantry/internal/discovery"
	"github.com/gantry-dev/gantry/internal/ingress"
)

const benchHost = "hello.bench.localhost"

// pinnedEnv marks the run that -pin started again on one CPU; its value
// is "N,G,P": the CPUs the first run could use, the generator's CPU and
// the proxies'.
const pinnedEnv = "GANTRY_BENCH_INGRESS_PINNED"

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "backend":
			runBackend(os.Args[2])
			return
		case "gantry":
			runGantry(os.Args[2], os.Args[3])
			return
		}
	}
	if err := drive(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/ingress:", err)
		os.Exit(1)
	}
}

// runBackend is the app: a small fixed response, like a health endpoint
// or a tiny API answer.
func runBackend(addr string) {
	body := []byte("hello from the backend\n")
	srv := &http.Server{Addr: addr, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	})}
	if err := srv.ListenAndServe(); err != nil {
		fmt.Fprintln(os.Stderr, "backend:", err)
		os.Exit(1)
	}
}

// runGantry serves the ingress in front of the backend as gantry up would,
// minus the access log (nginx's is off too).
func runGantry(addr, backend string) {
	maybeProfile()
	host, portStr, _ := net.SplitHostPort(backend)
	port, _ := strconv.Atoi(portStr)
	src := discovery.NewBroadcaster()
	src.Publish(&discovery.Snapshot{Revision: 1, Time: time.Now(), Services: map[string]*discovery.Service{
		"bench/hello": {
			Namespace: "bench", Name: "hello",
			Ports: []v1.Port{{Name: "http", Port: port, Protocol: v1.ProtocolHTTP}},
			Ready: []discovery.Endpoint{{Instance: "hello-0", IP: host}},
		},
	}})
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	p, err := ingress.New(ingress.Config{HTTPAddr: addr}, src, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gantry:", err)
		os.Exit(1)
	}
	if err := p.ListenAndServe(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "gantry:", err)
		os.Exit(1)
	}
}

type options struct {
	duration    time.Duration
	warmup      time.Duration
	threads     int
	connections int
	rounds      int
	latencyFor  time.Duration
	slices      int
	lightRate   float64
	rates       string
	backend     string
	pin         bool
	proxyNice   int
}

type target struct {
	name string
	url  string
	pid  int       // the process whose CPU time is charged to the target
	max  []float64 // requests/s per round
	cpu  []float64 // CPU µs per request per round
}

func drive() error {
	var o options
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of each wrk throughput measurement")
	flag.DurationVar(&o.warmup, "warmup", 3*time.Second, "wrk warm-up before the first measurement of each target")
	flag.IntVar(&o.threads, "threads", 2, "wrk threads")
	flag.IntVar(&o.connections, "connections", 64, "wrk connections (the same for every target)")
	flag.IntVar(&o.rounds, "rounds", 5, "throughput rounds, interleaved across targets; the median counts")
	flag.DurationVar(&o.latencyFor, "latency-duration", 15*time.Second, "open-loop latency run per target, in interleaved slices")
	flag.IntVar(&o.slices, "latency-slices", 5, "slices the latency runs are cut into, interleaved across targets")
	flag.Float64Var(&o.lightRate, "light-rate", 1000, "a second latency run at this fixed rate (0: skip)")
	flag.StringVar(&o.rates, "rates", "", "comma-separated extra open-loop rates in req/s, a load sweep (with -rounds 0, only these are measured)")
	flag.StringVar(&o.backend, "backend", "go", "the app behind both proxies: go (a net/http server) or nginx (nginx answering a fixed body, cheaper per request)")
	flag.IntVar(&o.proxyNice, "proxy-nice", 0, "start both proxies at this nice value (-10: the kernel runs them before the backend and the load generator, as a node may favour its load balancer over its apps; needs root)")
	flag.BoolVar(&o.pin, "pin", false, "run the proxies on one CPU and everything else (wrk, load generator, backend) on another, as if on machines of their own")
	flag.Parse()
	var sweep []float64
	for _, f := range strings.FieldsFunc(o.rates, func(r rune) bool { return r == ',' || r == ' ' }) {
		r, err := strconv.ParseFloat(f, 64)
		if err != nil || r <= 0 {
			return fmt.Errorf("-rates: %q is not a positive number of requests per second", f)
		}
		sweep = append(sweep, r)
	}
	if o.backend != "go" && o.backend != "nginx" {
		return fmt.Errorf("-backend %q: want go or nginx", o.backend)
	}
	if o.rounds < 0 || (o.rounds == 0 && len(sweep) == 0) {
		return errors.New("-rounds must be positive, or 0 together with -rates")
	}

	// With -pin: the first two CPUs this process may use; the generator's
	// side gets the first, the proxies the second.
	var genCPU, proxyCPU int
	if o.pin && os.Getenv(pinnedEnv) == "" {
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(0, &set); err != nil {
			return fmt.Errorf("-pin: %w", err)
		}
		var cpus []int
		for c := 0; c < 1024 && len(cpus) < 2; c++ {
			if set.IsSet(c) {
				cpus = append(cpus, c)
			}
		}
		if len(cpus) < 2 {
			return errors.New("-pin needs at least 2 CPUs")
		}
		taskset, err := exec.LookPath("taskset")
		if err != nil {
			return errors.New("-pin needs taskset (Debian: util-linux)")
		}
		// Run again on the first CPU, so that every thread of this
		// process (the load generator) and every child not placed
		// elsewhere (the backend, wrk) stays there.
		self, err := os.Executable()
		if err != nil {
			return err
		}
		env := append(os.Environ(), fmt.Sprintf("%s=%d,%d,%d", pinnedEnv, runtime.NumCPU(), cpus[0], cpus[1]))
		return syscall.Exec(taskset, append([]string{"taskset", "-c", strconv.Itoa(cpus[0]), self}, os.Args[1:]...), env)
	}
	machineCPUs := runtime.NumCPU()
	if o.pin {
		if _, err := fmt.Sscanf(os.Getenv(pinnedEnv), "%d,%d,%d", &machineCPUs, &genCPU, &proxyCPU); err != nil {
			return fmt.Errorf("-pin: bad %s=%q: %w", pinnedEnv, os.Getenv(pinnedEnv), err)
		}
	}

	for _, bin := range []string{"wrk", "nginx"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s not found: install it (Debian: apt-get install wrk nginx-light)", bin)
		}
	}
	dir, err := os.MkdirTemp("", "gantry-bench-ingress-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	backend := fmt.Sprintf("127.0.0.1:%d", ports[0])
	gantry := fmt.Sprintf("127.0.0.1:%d", ports[1])
	nginxAddr := fmt.Sprintf("127.0.0.1:%d", ports[2])

	workers := "auto"
	if o.pin {
		workers = "1"
	}
	var backendPid int
	var stopBackend func()
	if o.backend == "nginx" {
		backendPid, stopBackend, err = startNginx(filepath.Join(dir, "backend"), nginxBackendConf, backend, "", workers, exec.Command)
	} else {
		backendPid, stopBackend, err = start(exec.Command(self, "backend", backend))
	}
	if err != nil {
		return err
	}
	defer stopBackend()
	// proxyCmd places a proxy: on its own CPU when pinned (Go then runs
	// it with GOMAXPROCS 1 unless the environment sets it, and nginx gets
	// one worker), where it likes otherwise.
	// With -proxy-nice, both start at that nice value (nginx's workers
	// and every gantry thread inherit it).
	proxyCmd := func(name string, args ...string) *exec.Cmd {
		argv := append([]string{name}, args...)
		if o.pin {
			argv = append([]string{"taskset", "-c", strconv.Itoa(proxyCPU)}, argv...)
		}
		if o.proxyNice != 0 {
			argv = append([]string{"nice", "-n", strconv.Itoa(o.proxyNice)}, argv...)
		}
		return exec.Command(argv[0], argv[1:]...)
	}
	gantryPid, stopGantry, err := start(proxyCmd(self, "gantry", gantry, backend))
	if err != nil {
		return err
	}
	defer stopGantry()
	nginxPid, stopNginx, err := startNginx(filepath.Join(dir, "proxy"), nginxConf, nginxAddr, backend, workers, proxyCmd)
	if err != nil {
		return err
	}
	defer stopNginx()

	targets := []*target{
		{name: "direct", url: "http://" + backend + "/", pid: backendPid},
		{name: "nginx", url: "http://" + nginxAddr + "/", pid: nginxPid},
		{name: "gantry", url: "http://" + gantry + "/", pid: gantryPid},
	}
	for _, t := range targets {
		if err := waitReady(t.url); err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
	}
	nginxVersion, _ := exec.Command("nginx", "-v").CombinedOutput()
	fmt.Printf("# ingress benchmark: %d CPUs, %s, %s", machineCPUs, runtime.Version(), nginxVersion)
	placement := "backend, nginx, gantry, wrk and the load generator share the machine"
	if o.pin {
		placement = fmt.Sprintf("pinned: nginx and gantry on CPU %d; backend, wrk and the load generator on CPU %d", proxyCPU, genCPU)
	}
	if o.proxyNice != 0 {
		placement += fmt.Sprintf("; both proxies at nice %d", o.proxyNice)
	}
	fmt.Printf("# wrk -t%d -c%d -d%s -H 'Host: %s', %d round(s), median counts; nginx worker_processes %s, upstream keepalive; %s backend; %s\n",
		o.threads, o.connections, o.duration, benchHost, o.rounds, workers, o.backend, placement)
	// Like with like: as many nginx workers as gantry has Ps, both
	// keeping 256 idle upstream connections, both adding the same
	// X-Forwarded fields and neither logging requests.
	fmt.Printf("# nginx workers: %d; gantry GOMAXPROCS: %s; load average at start: %s\n",
		len(childPids(nginxPid)), gomaxprocs(gantryPid), loadAverage())
	defer func() { fmt.Printf("# load average at the end: %s\n", loadAverage()) }()

	for _, t := range targets {
		if _, _, err := runWrk(t.url, o.threads, o.connections, o.warmup); err != nil {
			return fmt.Errorf("warm-up %s: %w", t.name, err)
		}
	}
	for round := 0; round < o.rounds; round++ {
		for _, t := range targets {
			before := cpuTime(t.pid)
			rps, n, err := runWrk(t.url, o.threads, o.connections, o.duration)
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			cpu := float64(cpuTime(t.pid)-before) / float64(time.Microsecond) / float64(n)
			t.max = append(t.max, rps)
			t.cpu = append(t.cpu, cpu)
			fmt.Printf("#   round %d %-6s %8.0f req/s %6.1f µs CPU/req\n", round+1, t.name, rps, cpu)
		}
	}
	nginxMax, gantryMax := median(targets[1].max), median(targets[2].max)
	half := 0.5 * min(nginxMax, gantryMax)
	type latencyRun struct {
		label string
		rate  float64
		sums  map[string]loadgen.Summary
		busy  map[string]time.Duration // CPU time the target used during its slices
	}
	var runs []*latencyRun
	if o.rounds > 0 {
		runs = append(runs, &latencyRun{label: "half the lower proxy maximum", rate: half})
		if o.lightRate > 0 {
			runs = append(runs, &latencyRun{label: "light load", rate: o.lightRate})
		}
	}
	for _, r := range sweep {
		runs = append(runs, &latencyRun{label: "sweep", rate: r})
	}
	for _, lr := range runs {
		fmt.Printf("# open-loop latency at %.0f req/s (%s), %s per target in %d interleaved slices, bench/loadgen with %d connections\n",
			lr.rate, lr.label, o.latencyFor, o.slices, o.connections)
		lr.sums = map[string]loadgen.Summary{}
		all := map[string]*loadgen.Results{}
		slice := o.latencyFor / time.Duration(o.slices)
		lr.busy = map[string]time.Duration{}
		for i := 0; i < o.slices; i++ {
			for _, t := range targets {
				before := cpuTime(t.pid)
				run, err := loadgen.Start(context.Background(), loadgen.Config{URL: t.url, Host: benchHost, Rate: lr.rate, Duration: slice, Timeout: 5 * time.Second, Connections: o.connections, EventLoop: true})
				if err != nil {
					return err
				}
				res := run.Wait()
				lr.busy[t.name] += cpuTime(t.pid) - before
				if all[t.name] == nil {
					all[t.name] = &loadgen.Results{}
				}
				all[t.name].List = append(all[t.name].List, res.List...)
				all[t.name].End = all[t.name].End.Add(res.End.Sub(res.Start))
			}
		}
		for name, res := range all {
			s := res.Summary()
			if s.Failed > 0 {
				return fmt.Errorf("%s: %d requests failed during the latency run: %v", name, s.Failed, s.Failures)
			}
			lr.sums[name] = s
		}
	}

	fmt.Println()
	if o.rounds > 0 {
		fmt.Printf("%-8s %10s %9s %9s\n", "target", "max req/s", "vs nginx", "CPU/req")
	}
	for _, t := range targets {
		if o.rounds == 0 {
			break
		}
		fmt.Printf("%-8s %10.0f %8.2fx %7.1fµs\n", t.name, median(t.max), median(t.max)/nginxMax, median(t.cpu))
	}
	for _, lr := range runs {
		fmt.Printf("\nlatency at %.0f req/s (%s)\n", lr.rate, lr.label)
		fmt.Printf("%-8s %10s %10s %10s %10s %11s %12s %9s\n", "target", "p50", "p90", "p99", "p99.9", "p99 added", "gen. lag max", "CPU busy")
		direct := lr.sums["direct"].P99
		for _, t := range targets {
			s := lr.sums[t.name]
			added := "-"
			if t.name != "direct" {
				added = ms(s.P99 - direct)
			}
			busy := float64(lr.busy[t.name]) / float64(o.latencyFor) * 100
			fmt.Printf("%-8s %10s %10s %10s %10s %11s %12s %8.0f%%\n", t.name, ms(s.P50), ms(s.P90), ms(s.P99), ms(s.P999), added, ms(s.MaxLag), busy)
		}
	}
	fmt.Println()
	fmt.Printf("(CPU/req: the target process's CPU time per request under wrk, the backend's for direct, nginx's workers', gantry's;\n")
	fmt.Printf(" gen. lag max: the load generator's worst delay in sending, a sign of the machine, not the target, being the limit;\n")
	fmt.Printf(" CPU busy: the target process's CPU time during its latency slices, %% of one core)\n")
	if o.rounds == 0 {
		return nil
	}
	ratio := gantryMax / nginxMax
	added := runs[0].sums["gantry"].P99 - runs[0].sums["direct"].P99
	fmt.Printf("throughput gantry/nginx = %.2f (target >= 0.80): %s\n", ratio, verdict(ratio >= 0.8))
	fmt.Printf("added p99 gantry - direct = %s at %.0f req/s (target <= 1ms): %s\n", ms(added), half, verdict(added <= time.Millisecond))
	fmt.Printf("added p99 nginx - direct = %s (for reference)\n", ms(runs[0].sums["nginx"].P99-runs[0].sums["direct"].P99))
	return nil
}

// cpuTime is the user+system CPU time of pid and its child processes
// (nginx's workers), from /proc.
func cpuTime(pid int) time.Duration {
	total := procCPU(pid)
	for _, c := range childPids(pid) {
		total += procCPU(c)
	}
	return total
}

func childPids(pid int) []int {
	children, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	var out []int
	for _, f := range strings.Fields(string(children)) {
		if c, err := strconv.Atoi(f); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// gomaxprocs is the GOMAXPROCS the gantry process runs with: its own
// environment's, or the CPU count.
func gomaxprocs(pid int) string {
	env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	for _, kv := range strings.Split(string(env), "\x00") {
		if v, ok := strings.CutPrefix(kv, "GOMAXPROCS="); ok {
			return v + " (from the environment)"
		}
	}
	return "default (" + strconv.Itoa(runtime.NumCPU()) + " CPUs)"
}

func loadAverage() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the parenthesised command name; utime and stime are
	// the 14th and 15th fields of the whole line.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond)) }

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

var (
	wrkRate  = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkCount = regexp.MustCompile(`(\d+) requests in`)
)

// runWrk measures closed-loop throughput and returns requests/s and the
// number of requests. Any socket error or non-2xx answer makes the figure
// worthless, so it is an error.
func runWrk(url string, threads, conns int, d time.Duration) (float64, int, error) {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	out, err := exec.Command("wrk", "-t"+strconv.Itoa(threads), "-c"+strconv.Itoa(conns), "-d"+strconv.Itoa(secs)+"s",
		"-H", "Host: "+benchHost, url).CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("wrk: %v: %s", err, out)
	}
	if strings.Contains(string(out), "Socket errors") || strings.Contains(string(out), "Non-2xx") {
		return 0, 0, fmt.Errorf("wrk saw errors:\n%s", out)
	}
	m, c := wrkRate.FindSubmatch(out), wrkCount.FindSubmatch(out)
	if m == nil || c == nil {
		return 0, 0, fmt.Errorf("no Requests/sec in wrk output:\n%s", out)
	}
	rps, err := strconv.ParseFloat(string(m[1]), 64)
	n, _ := strconv.Atoi(string(c[1]))
	return rps, n, err
}

// nginxHead is what both nginx configurations share: everything in its
// temp dir, no access log, connections kept.
const nginxHead = `worker_processes {{workers}};
user root root;
pid {{dir}}/nginx.pid;
error_log {{dir}}/error.log warn;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path {{dir}}/client_body;
  proxy_temp_path {{dir}}/proxy;
  fastcgi_temp_path {{dir}}/fastcgi;
  uwsgi_temp_path {{dir}}/uwsgi;
  scgi_temp_path {{dir}}/scgi;
`

// nginxConf is nginx the proxy.
const nginxConf = nginxHead + `  upstream backend {
    server {{backend}};
    keepalive 256;
    keepalive_requests 1000000;
  }
  server {
    listen {{listen}};
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Forwarded-Proto $scheme;
    }
  }
}
`

// nginxBackendConf is the app when -backend nginx: the Go backend's
// answer, from nginx.
const nginxBackendConf = nginxHead + `  server {
    listen {{listen}};
    location / {
      default_type text/plain;
      return 200 "hello from the backend\n";
    }
  }
}
`

// startNginx runs nginx with conf (nginxConf or nginxBackendConf) in dir.
func startNginx(dir, conf, listen, backend, workers string, command func(string, ...string) *exec.Cmd) (int, func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, nil, err
	}
	conf = strings.NewReplacer("{{dir}}", dir, "{{listen}}", listen, "{{backend}}", backend, "{{workers}}", workers).Replace(conf)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return 0, nil, err
	}
	return start(command("nginx", "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", path))
}

// start runs cmd in its own process group and returns its pid and a stop
// function that ends exactly that group.
func start(cmd *exec.Cmd) (int, func(), error) {
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return 0, nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	return cmd.Process.Pid, func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}, nil
}

func waitReady(url string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Host = benchHost
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			err = errors.New(resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePorts(n int) ([]int, error) {
	var out []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}
