package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/gantry-dev/gantry/internal/image"
	"github.com/gantry-dev/gantry/internal/logfile"
	"github.com/gantry-dev/gantry/internal/runtime/runtimetest"
)

// logDriverArg makes the test binary act as the log driver: the shim runs
// it with this argument and the driver config.
const logDriverArg = "__gantry-test-log-driver"

// testNamespace keeps test containers apart from a real agent's.
const testNamespace = "gantry-test"

func TestMain(m *testing.M) { runtimetest.Main(m, logDriverArg, shared.teardown) }

// env is one private containerd and one in-process registry with busybox
// pushed to it, shared by the tests of this package: starting containerd
// per test would dominate the run time.
type env struct {
	dir      string
	daemon   *Daemon
	registry *httptest.Server
	requests atomic.Int64 // registry requests served

	mu      sync.Mutex
	served  []string // "METHOD path" of every registry request, in order
	busybox string   // ref of the busybox image in the registry
	digest  string   // its manifest digest
	driver  *Driver
	err     error
}

var (
	shared     env
	sharedOnce sync.Once
)

// testEnv returns the shared environment, starting it on first use. Tests
// that need containerd skip when not run as root.
func testEnv(t testing.TB) *env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run containerd and containers")
	}
	if _, err := exec.LookPath("containerd"); err != nil {
		t.Skip("containerd is not installed (scripts/setup.sh installs it)")
	}
	sharedOnce.Do(func() { shared.err = shared.start() })
	if shared.err != nil {
		t.Fatalf("test environment: %v", shared.err)
	}
	return &shared
}

// servedSince returns the registry requests made after the first n, and
// the new count to pass next time.
func (e *env) servedSince(n int) ([]string, int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.served[n:]...), len(e.served)
}

func (e *env) start() error {
	dir, err := os.MkdirTemp("", "gtrt")
	if err != nil {
		return err
	}
	e.dir = dir
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e.daemon, err = StartDaemon(ctx, DaemonConfig{Dir: filepath.Join(dir, "ctrd")}, testLogger())
	if err != nil {
		return err
	}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	e.registry = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.requests.Add(1)
		e.mu.Lock()
		e.served = append(e.served, r.Method+" "+r.URL.Path)
		e.mu.Unlock()
		reg.ServeHTTP(w, r)
	}))
	host := strings.TrimPrefix(e.registry.URL, "http://")
	e.busybox = host + "/library/busybox:latest"
	e.digest, err = pushBusybox(e.busybox)
	if err != nil {
		return err
	}
	e.driver, err = e.newDriver(ctx)
	return err
}

func (e *env) newDriver(ctx context.Context) (*Driver, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return New(ctx, Config{
		Address:   e.daemon.Address(),
		Namespace: testNamespace,
		LogDriver: []string{exe, logDriverArg},
		OpenFiles: e.daemon.OpenFilesLimit,
	}, testLogger())
}

// pushBusybox pushes internal/image's busybox to ref and returns its digest.
func pushBusybox(ref string) (string, error) {
	img, err := image.Busybox()
	if err != nil {
		return "", err
	}
	if err := pushImage(ref, img); err != nil {
		return "", fmt.Errorf("push busybox: %w", err)
	}
	d, err := img.Digest()
	return d.String(), err
}

// pushImage pushes img to ref on the plain-HTTP test registry.
func pushImage(ref string, img ggcr.Image) error {
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return err
	}
	return remote.Write(r, img)
}

// teardown removes every test container, stops containerd and deletes its
// directory.
func (e *env) teardown() {
	if e.driver != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cs, _ := e.driver.List(ctx)
		for _, c := range cs {
			_ = e.driver.Remove(ctx, c.ID)
		}
		e.driver.Close()
	}
	if e.daemon != nil {
		_ = e.daemon.Stop()
	}
	if e.registry != nil {
		e.registry.Close()
	}
	if e.dir != "" {
		runtimetest.UnmountUnder(e.dir)
		os.RemoveAll(e.dir)
	}
	runtimetest.RemoveNamespaceDirs(testNamespace)
}

var (
	testLogger = runtimetest.Logger
	ctxT       = runtimetest.Context
)

// newID returns a container ID unique to this test run.
func newID(t testing.TB) string {
	b := make([]byte, 4)
	rand.Read(b)
	// containerd IDs are alphanumeric words joined by single . _ or -.
	var words []string
	for _, w := range strings.FieldsFunc(strings.ToLower(t.Name()), func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9')
	}) {
		words = append(words, w)
	}
	n := strings.Join(words, "-")
	if len(n) > 40 {
		n = strings.Trim(n[:40], "-")
	}
	return n + "-" + hex.EncodeToString(b)
}

// run creates and starts a container of the shared busybox, removed when
// the test ends. mutate adjusts the spec first.
func run(t *testing.T, e *env, d *Driver, mutate func(*ContainerSpec)) *ContainerSpec {
	t.Helper()
	s := create(t, e, d, mutate)
	if _, err := d.Start(ctxT(t, 60*time.Second), s.ID); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return s
}

// create is run without the start.
func create(t *testing.T, e *env, d *Driver, mutate func(*ContainerSpec)) *ContainerSpec {
	t.Helper()
	s := &ContainerSpec{
		ID:      newID(t),
		Image:   e.busybox,
		Labels:  map[string]string{"test": t.Name()},
		LogPath: filepath.Join(e.dir, "logs", newID(t)+".log"),
	}
	if mutate != nil {
		mutate(s)
	}
	ctx := ctxT(t, 60*time.Second)
	if err := d.Create(ctx, s); err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Remove(context.Background(), s.ID); err != nil {
			t.Errorf("Remove %s: %v", s.ID, err)
		}
	})
	return s
}

// waitExit waits for the current run of id to end.
func waitExit(t *testing.T, d *Driver, id string, timeout time.Duration) Exit {
	t.Helper()
	ctx := ctxT(t, timeout)
	ch, err := d.Wait(ctx, id)
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	ex := <-ch
	if ex.Err != nil {
		t.Fatalf("Wait: %v", ex.Err)
	}
	return ex
}

// logLines returns the lines of a container's log, waiting until want
// lines are there (output reaches the log file a moment after the write).
func logLines(t *testing.T, path string, want int) []logfile.Entry {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := logfile.Open(path, logfile.ReadOptions{})
		if err != nil {
			t.Fatalf("open log: %v", err)
		}
		var out []logfile.Entry
		for {
			e, err := r.Next(context.Background())
			if err != nil {
				break
			}
			out = append(out, e)
		}
		r.Close()
		if len(out) >= want || time.Now().After(deadline) {
			return out
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// output runs cmd in a new container, waits for it, and returns its exit
// code and its stdout from the log. (Stderr is a separate pipe: its lines
// interleave with stdout's in no fixed order.)
func output(t *testing.T, e *env, mutate func(*ContainerSpec), cmd ...string) (int, string) {
	t.Helper()
	s := run(t, e, e.driver, func(s *ContainerSpec) {
		s.Command = cmd
		if mutate != nil {
			mutate(s)
		}
	})
	ex := waitExit(t, e.driver, s.ID, 30*time.Second)
	// Stop ends the run: the shim then waits for the log driver to write
	// everything before it returns.
	if err := e.driver.Stop(ctxT(t, 30*time.Second), s.ID, time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	var b strings.Builder
	for _, l := range logLines(t, s.LogPath, 0) {
		if l.Stream == logfile.Stdout {
			b.WriteString(l.Line + "\n")
		}
	}
	return ex.Code, b.String()
}
