package build

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/pkg/namespaces"
)

// signalWriter closes ch the first time the text written to it contains
// want.
type signalWriter struct {
	mu   sync.Mutex
	text strings.Builder
	want string
	ch   chan struct{}
	done bool
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.text.Write(p)
	if !w.done && strings.Contains(w.text.String(), w.want) {
		w.done = true
		close(w.ch)
	}
	return len(p), nil
}

// TestCancelledBuildLeavesNothing cancels a build while its RUN step runs:
// Build returns promptly and leaves nothing in containerd.
func TestCancelledBuildLeavesNothing(t *testing.T) {
	e := testEnv(t)
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM library/busybox\nRUN echo started && sleep 60\n"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &signalWriter{want: "    started", ch: make(chan struct{})}
	errc := make(chan error, 1)
	go func() {
		_, err := Build(ctx, e.options(dir, t.TempDir(), w))
		errc <- err
	}()
	select {
	case <-w.ch:
	case err := <-errc:
		t.Fatalf("build ended before its step started: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("the RUN step did not start")
	}
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the build did not stop after cancellation")
	}
	e.assertClean(t)
}

// TestSweepRemovesWhatDeadBuildsLeft leaves a lease, a snapshot and a
// container behind as a build killed mid-step would, and checks that the
// next build removes them.
func TestSweepRemovesWhatDeadBuildsLeft(t *testing.T) {
	e := testEnv(t)
	// A process ID that is no longer in use.
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	ctx := namespaces.WithNamespace(ctxT(t, time.Minute), Namespace)
	id := "gantry-build-deadbeef0000"
	l, err := e.client.LeasesService().Create(ctx, leases.WithID(id), leases.WithLabels(map[string]string{labelBuild: id, labelPid: strconv.Itoa(gone.Process.Pid)}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.SnapshotService(snapshotter).Prepare(leases.WithLease(ctx, l.ID), id+"-step-1", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.NewContainer(ctx, id+"-run-2", client.WithContainerLabels(map[string]string{labelBuild: id}), client.WithNewSpec()); err != nil {
		t.Fatal(err)
	}
	// A build that needs containerd (a COPY does) sweeps first; e.build
	// then checks that nothing is left.
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM scratch\nCOPY a /a\n", "a": "a"})
	if _, _, err := e.build(t, dir, t.TempDir(), nil); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentBuilds runs two builds of one Dockerfile at once on one
// containerd and one cache directory: both succeed, nothing is left, and
// a third build finds every step in the cache.
func TestConcurrentBuilds(t *testing.T) {
	e := testEnv(t)
	dir := writeContext(t, map[string]string{
		"Dockerfile": "FROM library/busybox\nRUN echo one > /one\nCOPY f /f\nRUN cat /f /one > /both\n",
		"f":          "f\n",
	})
	cache := t.TempDir()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = Build(ctxT(t, 3*time.Minute), e.options(dir, cache, nil))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("build %d: %v", i, err)
		}
	}
	e.assertClean(t)
	img, progress, err := e.build(t, dir, cache, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(progress, "(cached)"); n != 3 {
		t.Errorf("%d steps cached, want 3:\n%s", n, progress)
	}
	if got := flatten(t, img)["/both"].content; got != "f\none\n" {
		t.Errorf("/both = %q", got)
	}
}

// TestRunSandbox checks the defaults a RUN step runs with: no network
// but loopback, no new privileges, seccomp on, no CAP_NET_RAW; and that
// HostNetwork gives the host's network.
func TestRunSandbox(t *testing.T) {
	e := testEnv(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "reached") }))
	defer srv.Close()
	// busybox's nc rather than its wget, which crashes in Debian's static
	// build.
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM library/busybox\n" +
		"RUN (printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc " + strings.Replace(strings.TrimPrefix(srv.URL, "http://"), ":", " ", 1) + " | tail -n 1 > /net; [ -s /net ] || echo unreachable > /net) && grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status > /status\n"})

	img, progress, err := e.build(t, dir, t.TempDir(), nil)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, progress)
	}
	fs := flatten(t, img)
	if got := fs["/net"].content; got != "unreachable\n" {
		t.Errorf("a RUN step reached the host's loopback without HostNetwork: %q", got)
	}
	status := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(fs["/status"].content), "\n") {
		k, v, _ := strings.Cut(line, ":")
		status[k] = strings.TrimSpace(v)
	}
	if status["NoNewPrivs"] != "1" || status["Seccomp"] != "2" {
		t.Errorf("status = %v, want NoNewPrivs 1 and Seccomp 2 (filter)", status)
	}
	caps, err := strconv.ParseUint(status["CapEff"], 16, 64)
	const capNetRaw, capSysAdmin = 13, 21
	if err != nil || caps&(1<<capNetRaw) != 0 || caps&(1<<capSysAdmin) != 0 || caps == 0 {
		t.Errorf("CapEff = %q: want the trimmed default set, without NET_RAW and SYS_ADMIN", status["CapEff"])
	}

	img, progress, err = e.build(t, dir, t.TempDir(), func(o *Options) { o.HostNetwork = true })
	if err != nil {
		t.Fatalf("build: %v\n%s", err, progress)
	}
	if got := flatten(t, img)["/net"].content; got != "reached" {
		t.Errorf("with HostNetwork, /net = %q", got)
	}
}
