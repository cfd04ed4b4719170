// Command api measures Gantry's API server the way issue 2 states its
// targets: time from `gantry up` to /readyz, idle memory, the ceiling of
// App updates per second from 16 concurrent clients, and latency
// percentiles at a fixed 1,000 updates/s (open loop: requests go out on a
// schedule whatever the answers).
//
//	go run ./bench/api -gantry bin/gantry
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"sigs.k8s.io/yaml"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
)

func main() {
	bin := flag.String("gantry", "bin/gantry", "the gantry binary")
	clients := flag.Int("clients", 16, "concurrent clients")
	rate := flag.Int("rate", 1000, "updates per second for the latency run")
	dur := flag.Duration("duration", 10*time.Second, "length of each run")
	extra := flag.String("extra", "", "more flags for gantry up, space-separated")
	flag.Parse()

	dir, err := os.MkdirTemp("", "gantry-bench-api")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	addr := freeAddr()
	cmd := exec.Command(*bin, "up", "--no-agent", "--data-dir", dir, "--api-addr", addr,
		"--write-config", filepath.Join(dir, "config"), "--dns-addr", freeAddr(), "--registry-addr", freeAddr(), "--ingress-addr", freeAddr(), "--log-level", "warn")
	if *extra != "" {
		cmd.Args = append(cmd.Args, strings.Fields(*extra)...)
	}
	cmd.Stderr = os.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGINT); cmd.Wait() }()
	// The server's certificate comes from a CA made at this very start:
	// poll readiness without verifying, then use the CA from the config.
	probe := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: time.Second}
	for {
		resp, err := probe.Get("https://" + addr + "/readyz")
		if err == nil && resp.StatusCode == 200 {
			resp.Body.Close()
			break
		}
		if time.Since(start) > 30*time.Second {
			log.Fatal("gantry up not ready in 30s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	ready := time.Since(start)
	var token, ca string
	for token == "" {
		b, _ := os.ReadFile(filepath.Join(dir, "config"))
		var cfg struct{ Token, CA string }
		yaml.Unmarshal(b, &cfg)
		token, ca = cfg.Token, cfg.CA
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)
	idleRSS := rss(cmd.Process.Pid)

	c, err := client.New(client.Config{Server: "https://" + addr, Token: token, CA: []byte(ca)})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	apps := make([]*v1.App, *clients)
	for i := range apps {
		o, err := v1.DecodeManifest([]byte(fmt.Sprintf("kind: App\nname: bench-%d\nimage: bench:v1\nreplicas: 0\n", i)))
		if err != nil {
			log.Fatal(err)
		}
		if _, err := c.Apply(ctx, o); err != nil {
			log.Fatal(err)
		}
		a, err := client.Get[*v1.App](ctx, c, "default", o.GetMeta().Name)
		if err != nil {
			log.Fatal(err)
		}
		apps[i] = a
	}
	// Let the controllers settle the new Apps' status, then read them.
	time.Sleep(time.Second)
	for i := range apps {
		if apps[i], err = client.Get[*v1.App](ctx, c, "default", apps[i].Metadata.Name); err != nil {
			log.Fatal(err)
		}
	}
	var conflicts atomic.Int64
	// update is one compare-and-swap update; a conflict (another writer
	// got there first) is answered as any client would: read, retry. The
	// latency covers the whole exchange.
	update := func(i int, seq int64) (time.Duration, error) {
		t0 := time.Now()
		for {
			a := apps[i]
			if a.Metadata.Annotations == nil {
				a.Metadata.Annotations = map[string]string{}
			}
			a.Metadata.Annotations["bench/seq"] = fmt.Sprint(seq)
			err := c.Update(ctx, a)
			if errors.Is(err, v1.ErrConflict) {
				conflicts.Add(1)
				fresh, gerr := client.Get[*v1.App](ctx, c, "default", a.Metadata.Name)
				if gerr != nil {
					return time.Since(t0), gerr
				}
				apps[i] = fresh
				continue
			}
			return time.Since(t0), err
		}
	}

	// Ceiling: each client updates its own App as fast as it can.
	var n, errs atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(*dur)
	for i := 0; i < *clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := int64(0); time.Now().Before(stop); seq++ {
				if _, err := update(i, seq); err != nil {
					if errs.Add(1) == 1 {
						log.Printf("first error: %v", err)
					}
					continue
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	ceiling := float64(n.Load()) / dur.Seconds()

	// Latency at a fixed rate, spread over the clients.
	var mu sync.Mutex
	var lat []time.Duration
	var lerrs atomic.Int64
	interval := time.Second / time.Duration(*rate)
	slots := make([]chan int64, *clients)
	for i := range slots {
		slots[i] = make(chan int64, 1024)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := range slots[i] {
				d, err := update(i, seq)
				if err != nil {
					lerrs.Add(1)
					continue
				}
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		}()
	}
	// Requests go out on a fixed schedule (the nth at start + n×interval)
	// whatever the answers: a Go ticker would drop ticks under load and
	// quietly lower the rate.
	begin := time.Now()
	total := int64(dur.Seconds() * float64(*rate))
	for seq := int64(1); seq <= total; seq++ {
		if d := time.Until(begin.Add(time.Duration(seq) * interval)); d > 0 {
			time.Sleep(d)
		}
		select {
		case slots[seq%int64(*clients)] <- 1_000_000 + seq:
		default:
			lerrs.Add(1) // the client fell too far behind: count as a failure
		}
	}
	for _, s := range slots {
		close(s)
	}
	wg.Wait()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[int(float64(len(lat)-1)*p)]
	}
	fmt.Println("API benchmark (gantry up --no-agent, embedded etcd, App updates with compare-and-swap)")
	fmt.Printf("%-40s %s\n", "gantry up to /readyz", ready.Round(time.Millisecond))
	fmt.Printf("%-40s %.1f MB\n", "idle RSS after start", float64(idleRSS)/(1<<20))
	fmt.Printf("%-40s %.0f updates/s (%d errors)\n", fmt.Sprintf("ceiling, %d clients, %s", *clients, *dur), ceiling, errs.Load())
	fmt.Printf("%-40s %d done, %d failed\n", fmt.Sprintf("at %d updates/s for %s", *rate, *dur), len(lat), lerrs.Load())
	fmt.Printf("%-40s %d\n", "conflicts retried (both runs)", conflicts.Load())
	fmt.Printf("%-40s p50 %s  p90 %s  p99 %s  max %s\n", "latency at that rate", pct(.5).Round(10*time.Microsecond), pct(.9).Round(10*time.Microsecond), pct(.99).Round(10*time.Microsecond), pct(1).Round(10*time.Microsecond))
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// rss reads a process's resident set size.
func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		var kb int64
		if n, _ := fmt.Sscanf(l, "VmRSS: %d kB", &kb); n == 1 {
			return kb << 10
		}
	}
	return 0
}
