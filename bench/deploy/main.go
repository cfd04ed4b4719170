// Command deploy measures how fast Gantry turns an apply into a running
// container and what a node full of instances costs, on a real `gantry
// up` with its own containerd, bridge and subnet (set up the way the e2e
// harness does it, and removed with `gantry down --purge` even on
// failure or Ctrl-C). Parts:
//
//   - latency: N deploys of a 1-replica busybox App with the image already
//     on the node, from the apply call returning to the instance Running
//     as seen by a watch opened before the first apply; interleaved with
//     the floor (runtime.BaselineCreateStart: the same image created and
//     started straight through containerd's client, on the same
//     containerd), the floor with the default seccomp profile, and
//     Gantry's runtime driver alone (Create+Start, no network, no API) with
//     three log setups. Each deploy is split into segments from the watch,
//     containerd's own events and the debug log.
//   - accumulate: the same, but the Apps are kept, so deploy i runs next
//     to i-1 instances.
//   - scale: one App scaled to M instances; time until all are Running,
//     where the burst queues and what CPU it costs, next to the same burst
//     straight through containerd; then the CPU of gantry up (server and
//     agent share the process), its containerd, the shims and the log
//     drivers over a steady window with 0 and with M instances, once per
//     --sample-interval given, and of an idle gantry up --no-agent.
//   - policy: network.SetPolicy timed for 1 to 200 members on a bridge of
//     its own (each instance start waits for one, one at a time per node).
//
// Usage, as root from the repository:
//
//	go run ./bench/deploy                          # every part (~25 min)
//	go run ./bench/deploy -parts latency -deploys 50
//	go run ./bench/deploy -parts scale -instances 100 -window 60s -intervals 1h,10s
//
// It needs root, containerd, runc, iptables and the CNI plugins, like the
// e2e tests. README.md explains the method and the caveats.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"syscall"
	"time"

	"github.com/gantry-dev/gantry/internal/clusterslot"
)

type options struct {
	gantry    string
	logDriver string
	parts     []string
	deploys   int
	instances int
	window    time.Duration
	settle    time.Duration
	pause     time.Duration
	intervals []string
	keepLogs  string
	scaleLog  string
	// profileDir, when set, receives CPU profiles of gantry up over each
	// CPU window of the scale part (gantry up runs with --debug-addr).
	profileDir string
}

func numCPU() int { return goruntime.NumCPU() }

func main() {
	var o options
	var parts, intervals string
	flag.StringVar(&o.gantry, "gantry", "", "gantry binary to run (default: build ./cmd/gantry into a temporary directory)")
	flag.StringVar(&o.logDriver, "logdriver", "", "the small log driver binary (default: build ./cmd/gantry-logdriver)")
	flag.StringVar(&parts, "parts", "latency,accumulate,scale,policy", "what to run: latency, accumulate, scale, policy (comma-separated)")
	flag.IntVar(&o.deploys, "deploys", 50, "deploys measured by latency and accumulate")
	flag.IntVar(&o.instances, "instances", 100, "instances started by scale")
	flag.DurationVar(&o.window, "window", 60*time.Second, "CPU measurement window of scale")
	flag.DurationVar(&o.settle, "settle", 15*time.Second, "wait before each CPU window")
	flag.DurationVar(&o.pause, "pause", 200*time.Millisecond, "pause between two measured steps of latency")
	flag.StringVar(&intervals, "intervals", "1h,10s", "agent --sample-interval values for scale; 1h means no sample falls in the window")
	flag.StringVar(&o.scaleLog, "scale-log-level", "info", "log level of the scale clusters (debug adds network.Setup times of the burst, and log volume to the CPU)")
	flag.StringVar(&o.profileDir, "profile", "", "save CPU profiles of gantry up over the scale part's CPU windows in this directory (adds --debug-addr)")
	flag.StringVar(&o.keepLogs, "keep-logs", "", "copy each cluster's gantry up log into this directory before it is purged")
	flag.Parse()
	o.parts = strings.Split(parts, ",")
	o.intervals = strings.Split(intervals, ",")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench/deploy:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, w io.Writer) error {
	if os.Getuid() != 0 {
		return errors.New("needs root (containerd, bridges, iptables)")
	}
	for _, bin := range []string{"containerd", "runc", "iptables", "containerd-shim-runc-v2"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s not found: run scripts/setup.sh", bin)
		}
	}
	dir, err := os.MkdirTemp("", "gantry-bench-bin-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	for _, b := range []struct {
		path *string
		pkg  string
	}{{&o.gantry, "cmd/gantry"}, {&o.logDriver, "cmd/gantry-logdriver"}} {
		if *b.path == "" {
			*b.path = filepath.Join(dir, filepath.Base(b.pkg))
			cmd := exec.CommandContext(ctx, "go", "build", "-o", *b.path, "github.com/gantry-dev/gantry/"+b.pkg)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("build %s: %w\n%s", b.pkg, err, out)
			}
		}
		if abs, err := filepath.Abs(*b.path); err == nil {
			*b.path = abs
		}
	}
	printEnv(w)

	for _, part := range o.parts {
		switch part {
		case "latency", "accumulate":
			err := withCluster(ctx, o, "debug", nil, w, func(c *cluster) error {
				return runLatency(ctx, c, o, part == "accumulate", w)
			})
			if err != nil {
				return fmt.Errorf("%s: %w", part, err)
			}
		case "scale":
			var server *cpuWindow
			err := withCluster(ctx, o, "info", append([]string{"--no-agent"}, debugArgs(o)...), w, func(c *cluster) error {
				cw, err := runServerOnly(ctx, c, o, w)
				server = &cw
				return err
			})
			if err != nil {
				return fmt.Errorf("scale, server only: %w", err)
			}
			var rs []fleetResult
			for _, iv := range o.intervals {
				err := withCluster(ctx, o, o.scaleLog, append([]string{"--sample-interval", iv}, debugArgs(o)...), w, func(c *cluster) error {
					r, err := runScale(ctx, c, o, iv, w)
					if err == nil {
						rs = append(rs, r)
					}
					return err
				})
				if err != nil {
					printScale(w, rs, server)
					return fmt.Errorf("scale with --sample-interval %s: %w", iv, err)
				}
			}
			printScale(w, rs, server)
		case "policy":
			if err := runPolicy(ctx, o, w); err != nil {
				return fmt.Errorf("policy: %w", err)
			}
		default:
			return fmt.Errorf("unknown part %q: use latency, accumulate, scale or policy", part)
		}
	}
	return nil
}

// debugArgs turns on gantry up's pprof endpoint when profiles are asked
// for.
func debugArgs(o options) []string {
	if o.profileDir == "" {
		return nil
	}
	addr, err := clusterslot.FreePort()
	if err != nil {
		return nil
	}
	return []string{"--debug-addr", addr}
}

// withCluster runs fn on a fresh cluster and always destroys it after.
func withCluster(ctx context.Context, o options, logLevel string, extra []string, w io.Writer, fn func(*cluster) error) (err error) {
	c, err := startCluster(ctx, o.gantry, logLevel, extra...)
	defer func() {
		if c == nil {
			return
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "gantry up log tail (%s):\n%s\n", c.logPath(), logTail(c.logPath(), 6000))
		}
		if o.keepLogs != "" {
			os.MkdirAll(o.keepLogs, 0o755)
			if b, rerr := os.ReadFile(c.logPath()); rerr == nil {
				os.WriteFile(filepath.Join(o.keepLogs, filepath.Base(c.dir)+".log"), b, 0o644)
			}
		}
		if derr := c.destroy(); derr != nil {
			err = errors.Join(err, derr)
		}
	}()
	if err != nil {
		return fmt.Errorf("start gantry up: %w", err)
	}
	fmt.Fprintf(w, "\n== cluster %s: %s %s\n", c.node, c.bin, strings.Join(c.args, " "))
	return fn(c)
}

func logTail(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// printEnv says what the figures were measured on.
func printEnv(w io.Writer) {
	fmt.Fprintf(w, "command: %s\n", strings.Join(os.Args, " "))
	fmt.Fprintf(w, "date: %s\n", time.Now().UTC().Format(time.RFC3339))
	var uts syscall.Utsname
	if syscall.Uname(&uts) == nil {
		fmt.Fprintf(w, "kernel: %s\n", utsString(uts.Release[:]))
	}
	fmt.Fprintf(w, "cpus: %d; load average: %s\n", numCPU(), loadAvg())
	for _, v := range [][]string{{"containerd", "--version"}, {"runc", "--version"}, {"iptables", "--version"}} {
		out, _ := exec.Command(v[0], v[1:]...).Output()
		line, _, _ := strings.Cut(string(out), "\n")
		fmt.Fprintf(w, "%s\n", strings.TrimSpace(line))
	}
}

func utsString(b []int8) string {
	var s strings.Builder
	for _, c := range b {
		if c == 0 {
			break
		}
		s.WriteByte(byte(c))
	}
	return s.String()
}
