// Command build measures Gantry's Dockerfile builder on the issue's
// figure: a 3-step Dockerfile rebuilt with everything cached must finish
// in under a second.
//
//	sudo go run ./bench/build               # 20 cached rebuilds
//	sudo go run ./bench/build -rebuilds 100
//
// It sets up what `gantry image build` meets on a node: a private
// containerd (Debian's, started under a temporary directory), Gantry's
// registry in-process with authentication on (the builder logs in with a
// token through the Docker token flow) holding the busybox seed image,
// and a build context with this Dockerfile:
//
//	FROM library/busybox
//	RUN  (writes a file)
//	RUN  (writes another, and the time)
//	COPY (a file of the context)
//	CMD  [...]
//
// It builds once with an empty cache (the cold build: RUN steps in
// containerd, layers through the diff service), then rebuilds with no
// change, each rebuild a whole build.Build call: parse, resolve the base
// image in the registry, hash the COPY sources, look up every step, and
// assemble the image and its digest. It checks that each rebuild gives
// the cold build's digest (the second RUN writes the time, so a RUN that
// ran again would change it), prints the figures, and exits 2 when the
// median cached rebuild is not under a second.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/internal/image"
	"github.com/gantry-dev/gantry/internal/image/build"
	"github.com/gantry-dev/gantry/internal/registry"
	"github.com/gantry-dev/gantry/internal/registry/registrytest"
	"github.com/gantry-dev/gantry/internal/runtime"
)

const benchToken = "bench-token"

var benchAuth = registrytest.OneToken{Token: benchToken, User: "bench"}

const dockerfile = `FROM library/busybox
RUN echo one > /one.txt
RUN echo two > /two.txt && date +%s%N > /stamp
COPY hello.txt /srv/
CMD ["sh", "-c", "cat /one.txt /two.txt /srv/hello.txt"]
`

func main() {
	rebuilds := flag.Int("rebuilds", 20, "number of cached rebuilds to time")
	verbose := flag.Bool("v", false, "show the builds' progress")
	flag.Parse()
	err := run(*rebuilds, *verbose)
	if errors.Is(err, errTooSlow) {
		fmt.Println("FAIL:", err)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/build:", err)
		os.Exit(1)
	}
}

var errTooSlow = errors.New("the median cached rebuild is not under 1s")

func run(rebuilds int, verbose bool) error {
	if rebuilds < 1 {
		return errors.New("-rebuilds must be at least 1")
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root: RUN steps run in containerd")
	}
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "gtbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	log := slog.New(slog.DiscardHandler)

	d, err := runtime.StartDaemon(ctx, runtime.DaemonConfig{Dir: filepath.Join(dir, "ctrd")}, log)
	if err != nil {
		return err
	}
	defer d.Stop()
	reg, err := registry.New(ctx, registry.Config{DataDir: filepath.Join(dir, "registry"), Authenticator: benchAuth, Authorizer: benchAuth}, log)
	if err != nil {
		return err
	}
	defer reg.Close()
	srv := httptest.NewServer(reg.Handler())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	auth := image.Auth{Token: benchToken}
	if _, _, err := image.Seed(ctx, host, auth, nil); err != nil {
		return err
	}

	buildCtx := filepath.Join(dir, "context")
	if err := os.MkdirAll(buildCtx, 0o755); err != nil {
		return err
	}
	for name, content := range map[string]string{"Dockerfile": dockerfile, "hello.txt": "hello from the build context\n"} {
		if err := os.WriteFile(filepath.Join(buildCtx, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	var progress io.Writer = io.Discard
	if verbose {
		progress = os.Stderr
	}
	opts := build.Options{
		Dir: buildCtx, Tag: "bench/app:v1", Registry: host, Namespace: "bench", Auth: auth,
		Containerd: d.Address(), CacheDir: filepath.Join(dir, "cache"), Progress: progress, Log: log,
	}

	start := time.Now()
	img, err := build.Build(ctx, opts)
	if err != nil {
		return fmt.Errorf("cold build: %w", err)
	}
	cold := time.Since(start)
	want, err := img.Digest()
	if err != nil {
		return err
	}

	times := make([]time.Duration, 0, rebuilds)
	for i := 0; i < rebuilds; i++ {
		start := time.Now()
		img, err := build.Build(ctx, opts)
		if err != nil {
			return fmt.Errorf("cached build %d: %w", i+1, err)
		}
		got, err := img.Digest()
		times = append(times, time.Since(start))
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("cached build %d gave %s, want %s: a step ran again", i+1, got, want)
		}
	}
	slices.Sort(times)
	median := times[len(times)/2]
	p95 := times[min(len(times)-1, len(times)*95/100)]
	fmt.Printf("Dockerfile build, FROM library/busybox + RUN + RUN + COPY + CMD (containerd %s, registry with auth on loopback)\n", d.Address())
	fmt.Printf("%-34s %10s\n", "cold build (empty cache)", cold.Round(time.Millisecond))
	fmt.Printf("%-34s %10s\n", "cached rebuild, min", times[0].Round(100*time.Microsecond))
	fmt.Printf("%-34s %10s\n", "cached rebuild, median", median.Round(100*time.Microsecond))
	fmt.Printf("%-34s %10s\n", "cached rebuild, p95", p95.Round(100*time.Microsecond))
	fmt.Printf("%-34s %10s\n", "cached rebuild, max", times[len(times)-1].Round(100*time.Microsecond))
	fmt.Printf("rebuilds: %d, all with digest %s (target: median under 1s)\n", rebuilds, want)
	if median >= time.Second {
		return errTooSlow
	}
	return nil
}
