// Command registry benchmarks Gantry's built-in registry against Debian's
// docker-registry (distribution 2.8) side by side: the same client
// (go-containerregistry, 4 parallel layer transfers, as crane does) pushes
// and then pulls the same multi-layer image over loopback to each, round
// after round, alternating. Gantry runs with authentication on (the client
// takes the Docker token flow); docker-registry runs standalone without
// auth, as Debian ships it minus its htpasswd file, which makes the
// comparison conservative. Both registries run as processes of their own.
//
//	go run ./bench/registry                     # 200 MB in 8 layers, 5 rounds
//	go run ./bench/registry -mb 500 -layers 10 -rounds 3
//
// Every round uses fresh random (incompressible) layers so that neither
// registry can skip data it already holds. The table reports the median
// MB/s of the rounds, the MB moved per CPU-second of the server process
// (steadier than MB/s on a busy machine), and Gantry's ratios to
// docker-registry; the program exits 2 when the push+pull throughput
// ratio is below the 0.9 target.
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/gantry-dev/gantry/internal/registry"
	"github.com/gantry-dev/gantry/internal/registry/registrytest"
)

const benchToken = "bench-token"

var benchAuth = registrytest.OneToken{Token: benchToken, User: "bench"}

// target is one registry under test.
type target struct {
	name  string
	host  string
	pid   int // the server process, for its CPU time
	auth  authn.Authenticator
	push  []float64 // MB/s per round
	pull  []float64
	cpu   float64 // server CPU seconds over all rounds
	moved float64 // MB pushed and pulled over all rounds
}

func main() {
	mb := flag.Int("mb", 200, "image size in MB (10^6 bytes)")
	layers := flag.Int("layers", 8, "number of layers")
	rounds := flag.Int("rounds", 5, "rounds per registry")
	peerBin := flag.String("docker-registry", "/usr/bin/docker-registry", "Debian's docker-registry binary")
	serve := flag.String("serve-gantry", "", "internal: run Gantry's registry over this data directory and print its address")
	flag.Parse()
	if *serve != "" {
		if err := serveGantry(*serve); err != nil {
			fmt.Fprintln(os.Stderr, "serve:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*mb, *layers, *rounds, *peerBin); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		if errors.Is(err, errBelowTarget) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func run(mb, layers, rounds int, peerBin string) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	work, err := os.MkdirTemp("", "gantry-bench-registry-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	gantryHost, gantryPID, stopGantry, err := startGantry(filepath.Join(work, "gantry"))
	if err != nil {
		return fmt.Errorf("start gantry registry: %w", err)
	}
	defer stopGantry()
	peerHost, peerPID, stopPeer, err := startPeer(peerBin, filepath.Join(work, "peer"))
	if err != nil {
		return fmt.Errorf("start docker-registry: %w", err)
	}
	defer stopPeer()

	targets := []*target{
		{name: "gantry (auth on)", host: gantryHost, pid: gantryPID, auth: &authn.Basic{Username: "bench", Password: benchToken}},
		{name: "docker-registry 2.8", host: peerHost, pid: peerPID, auth: authn.Anonymous},
	}
	size := int64(mb) * 1_000_000
	fmt.Printf("image: %d MB in %d layers; %d rounds; client go-containerregistry, 4 parallel transfers; %s\n",
		mb, layers, rounds, cpuNote())
	for round := range rounds {
		img, err := randomImage(size, layers, uint64(round))
		if err != nil {
			return err
		}
		for _, t := range targets {
			repo := fmt.Sprintf("%s/bench/r%d:latest", t.host, round)
			cpu0 := cpuSeconds(t.pid)
			push, pull, err := pushPull(ctx, img, repo, t.auth, size)
			if err != nil {
				return fmt.Errorf("%s round %d: %w", t.name, round, err)
			}
			t.cpu += cpuSeconds(t.pid) - cpu0
			t.moved += 2 * float64(size) / 1e6
			t.push = append(t.push, push)
			t.pull = append(t.pull, pull)
			fmt.Printf("  round %d  %-20s push %7.1f MB/s  pull %7.1f MB/s\n", round+1, t.name, push, pull)
		}
	}
	g, p := targets[0], targets[1]
	fmt.Println()
	fmt.Printf("%-22s %12s %12s %16s %14s\n", "registry", "push MB/s", "pull MB/s", "push+pull MB/s", "MB/cpu-s")
	for _, t := range targets {
		fmt.Printf("%-22s %12.1f %12.1f %16.1f %14.1f\n", t.name, median(t.push), median(t.pull), both(t), t.moved/t.cpu)
	}
	ratio := both(g) / both(p)
	fmt.Printf("%-22s %11.2fx %11.2fx %15.2fx %13.2fx\n", "gantry / peer", median(g.push)/median(p.push), median(g.pull)/median(p.pull), ratio,
		(g.moved/g.cpu)/(p.moved/p.cpu))
	if ratio < targetRatio {
		fmt.Printf("\nBELOW TARGET: push+pull %.2fx < %.2fx\n", ratio, targetRatio)
		return errBelowTarget
	}
	fmt.Printf("\ntarget met: push+pull %.2fx >= %.2fx\n", ratio, targetRatio)
	return nil
}

// target is the push+pull throughput Gantry must reach, relative to
// docker-registry, with its authentication on.
const targetRatio = 0.9

var errBelowTarget = errors.New("gantry is below the target")

// both is the throughput of a push followed by a pull, from the medians.
func both(t *target) float64 {
	return 2 / (1/median(t.push) + 1/median(t.pull))
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func cpuNote() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	n := strings.Count(string(b), "\nprocessor") + 1
	return fmt.Sprintf("%d CPUs", n)
}

// randomImage makes an image of incompressible layers, seeded so that
// both registries get the same bytes in a round.
func randomImage(size int64, layers int, seed uint64) (ggcr.Image, error) {
	var seedBytes [32]byte
	binary.LittleEndian.PutUint64(seedBytes[:], seed+1)
	rng := rand.NewChaCha8(seedBytes)
	per := size / int64(layers)
	ls := make([]ggcr.Layer, 0, layers)
	for range layers {
		b := make([]byte, per)
		_, _ = rng.Read(b)
		ls = append(ls, static.NewLayer(b, types.OCILayer))
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	return mutate.AppendLayers(img, ls...)
}

func pushPull(ctx context.Context, img ggcr.Image, ref string, auth authn.Authenticator, size int64) (push, pull float64, err error) {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return 0, 0, err
	}
	// A fresh transport per run: no connection or token carried over.
	opts := func() []remote.Option {
		return []remote.Option{remote.WithContext(ctx), remote.WithAuth(auth), remote.WithJobs(4),
			remote.WithTransport(remote.DefaultTransport.(*http.Transport).Clone())}
	}
	start := time.Now()
	if err := remote.Write(r, img, opts()...); err != nil {
		return 0, 0, fmt.Errorf("push: %w", err)
	}
	push = float64(size) / 1e6 / time.Since(start).Seconds()

	start = time.Now()
	got, err := remote.Image(r, opts()...)
	if err != nil {
		return 0, 0, fmt.Errorf("pull: %w", err)
	}
	ls, err := got.Layers()
	if err != nil {
		return 0, 0, err
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		sem  = make(chan struct{}, 4)
		read int64
	)
	for _, l := range ls {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			// Compressed verifies the digest as it reaches the end.
			rc, err := l.Compressed()
			if err == nil {
				var n int64
				n, err = io.Copy(io.Discard, rc)
				if cerr := rc.Close(); err == nil {
					err = cerr
				}
				mu.Lock()
				read += n
				mu.Unlock()
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return 0, 0, fmt.Errorf("pull: %w", errors.Join(errs...))
	}
	if read < size {
		return 0, 0, fmt.Errorf("pull read %d bytes, want %d", read, size)
	}
	pull = float64(size) / 1e6 / time.Since(start).Seconds()
	return push, pull, nil
}

// startGantry runs Gantry's registry in a child process (this program
// again, with -serve-gantry), so that it is a process of its own like
// docker-registry and shares nothing with the client but the machine.
func startGantry(dir string) (string, int, func(), error) {
	self, err := os.Executable()
	if err != nil {
		return "", 0, nil, err
	}
	cmd := exec.Command(self, "-serve-gantry", dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", 0, nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", 0, nil, err
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		stop()
		return "", 0, nil, fmt.Errorf("gantry registry did not report its address: %w", err)
	}
	return strings.TrimSpace(line), cmd.Process.Pid, stop, nil
}

func serveGantry(dir string) error {
	reg, err := registry.New(context.Background(), registry.Config{DataDir: dir, Authenticator: benchAuth, Authorizer: benchAuth},
		slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer reg.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr().String())
	srv := &http.Server{Handler: reg.Handler(), ReadHeaderTimeout: 10 * time.Second}
	return srv.Serve(ln)
}

// startPeer runs docker-registry with a configuration of its own: the
// shape of Debian's default (filesystem storage, in-memory blob
// descriptor cache, deletes on) in a temporary directory, quiet logs.
func startPeer(bin, dir string) (string, int, func(), error) {
	if _, err := os.Stat(bin); err != nil {
		return "", 0, nil, fmt.Errorf("%s: %w (apt-get install docker-registry)", bin, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", 0, nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", 0, nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  secret: bench-secret
`, filepath.Join(dir, "data"), addr)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return "", 0, nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "docker-registry.log"))
	if err != nil {
		return "", 0, nil, err
	}
	cmd := exec.Command(bin, "serve", cfgPath)
	// It logs every 404 at error level; keep that out of the table.
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return "", 0, nil, err
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); logf.Close() }
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			return addr, cmd.Process.Pid, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return "", 0, nil, fmt.Errorf("docker-registry did not answer on %s: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cpuSeconds is the user and system CPU time a process has used so far,
// from /proc (in clock ticks of 1/100 s, Linux's USER_HZ).
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	var utime, stime float64
	fmt.Sscan(f[11], &utime)
	fmt.Sscan(f[12], &stime)
	return (utime + stime) / 100
}
