package build

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/gantry-dev/gantry/internal/image"
	"github.com/gantry-dev/gantry/internal/logfile"
	"github.com/gantry-dev/gantry/internal/registry"
	"github.com/gantry-dev/gantry/internal/registry/registrytest"
	"github.com/gantry-dev/gantry/internal/runtime"
	"github.com/gantry-dev/gantry/internal/runtime/runtimetest"
)

// logDriverArg makes the test binary the log driver of the containers
// the tests run: the shim starts it with this argument.
const logDriverArg = "__gantry-build-test-log-driver"

// runNamespace is where the tests run the images they build, apart from
// the build's own namespace, which must be empty after every build.
const runNamespace = "gantry-build-test"

const testToken = "build-test-token"

func TestMain(m *testing.M) { runtimetest.Main(m, logDriverArg, shared.teardown) }

// env is one private containerd and one Gantry registry (with auth on)
// holding the busybox seed image, shared by the tests of the package.
type env struct {
	dir      string
	daemon   *runtime.Daemon
	reg      *registry.Registry
	srv      *httptest.Server
	host     string // registry HOST:PORT
	auth     image.Auth
	driver   *runtime.Driver
	client   *client.Client
	err      error
	stopOnce sync.Once
}

var (
	shared     env
	sharedOnce sync.Once
)

// testEnv returns the shared environment, starting it on first use.
func testEnv(t testing.TB) *env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run containerd, mount snapshots and run RUN steps")
	}
	for _, bin := range []string{"containerd", "runc"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s is not installed (scripts/setup.sh installs it)", bin)
		}
	}
	if _, err := os.Stat(image.BusyboxPath); err != nil {
		t.Skip("busybox-static is not installed (scripts/setup.sh installs it)")
	}
	sharedOnce.Do(func() { shared.err = shared.start() })
	if shared.err != nil {
		t.Fatalf("test environment: %v", shared.err)
	}
	return &shared
}

// allowAll stands in for the platform's token store and RBAC: one token,
// allowed everything.
var allowAll = registrytest.OneToken{Token: testToken, User: "admin"}

func (e *env) start() error {
	// Short: containerd's socket path must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "gtbld")
	if err != nil {
		return err
	}
	e.dir = dir
	// The builder's own temporary mounts go under dir too, so assertClean
	// can tell them from those of other test processes sharing the host's
	// mount table (go test runs packages side by side).
	if err := mount.SetTempMountLocation(filepath.Join(dir, "tmpmounts")); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e.daemon, err = runtime.StartDaemon(ctx, runtime.DaemonConfig{Dir: filepath.Join(dir, "ctrd")}, testLogger())
	if err != nil {
		return err
	}
	e.reg, err = registry.New(ctx, registry.Config{DataDir: filepath.Join(dir, "registry"), Authenticator: allowAll, Authorizer: allowAll}, testLogger())
	if err != nil {
		return err
	}
	e.srv = httptest.NewServer(e.reg.Handler())
	e.host = strings.TrimPrefix(e.srv.URL, "http://")
	e.auth = image.Auth{Token: testToken}
	if _, _, err := image.Seed(ctx, e.host, e.auth, nil); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	e.driver, err = runtime.New(ctx, runtime.Config{
		Address:     e.daemon.Address(),
		Namespace:   runNamespace,
		LogDriver:   []string{exe, logDriverArg},
		Credentials: func(string) (string, string) { return "gantry", testToken },
	}, testLogger())
	if err != nil {
		return err
	}
	e.client, err = client.New(e.daemon.Address())
	return err
}

func (e *env) teardown() {
	e.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if e.driver != nil {
			cs, _ := e.driver.List(ctx)
			for _, c := range cs {
				_ = e.driver.Remove(ctx, c.ID)
			}
			e.driver.Close()
		}
		if e.client != nil {
			e.client.Close()
		}
		if e.daemon != nil {
			_ = e.daemon.Stop()
		}
		if e.srv != nil {
			e.srv.Close()
		}
		if e.reg != nil {
			e.reg.Close()
		}
		if e.dir != "" {
			runtimetest.UnmountUnder(e.dir)
			os.RemoveAll(e.dir)
		}
		runtimetest.RemoveNamespaceDirs(runNamespace, Namespace)
	})
}

var (
	testLogger = runtimetest.Logger
	ctxT       = runtimetest.Context
)

// writeContext makes a build context from a map of relative paths to
// contents.
func writeContext(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, c := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// options are the build options of the test environment.
func (e *env) options(dir, cacheDir string, progress io.Writer) Options {
	return Options{
		Dir:        dir,
		Tag:        "test/app:v1",
		Registry:   e.host,
		Namespace:  "test",
		Auth:       e.auth,
		Containerd: e.daemon.Address(),
		CacheDir:   cacheDir,
		Progress:   progress,
		Log:        testLogger(),
	}
}

// lockedBuffer collects progress output safely.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// build builds dir and checks that nothing is left in containerd.
func (e *env) build(t *testing.T, dir, cacheDir string, mutate func(*Options)) (ggcr.Image, string, error) {
	t.Helper()
	var out lockedBuffer
	opts := e.options(dir, cacheDir, &out)
	if mutate != nil {
		mutate(&opts)
	}
	img, err := Build(ctxT(t, 3*time.Minute), opts)
	if testing.Verbose() {
		t.Logf("progress:\n%s", out.String())
	}
	e.assertClean(t)
	return img, out.String(), err
}

// assertClean checks that the build namespace holds no container, lease,
// snapshot or content, and that no temporary mount is left under its
// directory (the test's own and its containerd's).
func (e *env) assertClean(t *testing.T) {
	t.Helper()
	ctx := namespaces.WithNamespace(ctxT(t, 30*time.Second), Namespace)
	cs, err := e.client.Containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		t.Errorf("container %s left behind", c.ID())
	}
	ls, err := e.client.LeasesService().List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		t.Errorf("lease %s left behind", l.ID)
	}
	err = e.client.SnapshotService(snapshotter).Walk(ctx, func(_ context.Context, i snapshots.Info) error {
		t.Errorf("snapshot %s left behind", i.Name)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = e.client.ContentStore().Walk(ctx, func(i content.Info) error {
		t.Errorf("content %s left behind", i.Digest)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID parent major:minor root MOUNTPOINT ...
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], e.dir+"/") && strings.Contains(fields[4], "containerd-mount") {
			t.Errorf("temporary mount left behind: %s", sc.Text())
		}
	}
}

// fileEntry is a file of an image's flattened filesystem.
type fileEntry struct {
	typ      byte
	mode     int64
	uid, gid int
	link     string
	content  string
}

// flatten reads the filesystem of an image.
func flatten(t *testing.T, img ggcr.Image) map[string]fileEntry {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	out := map[string]fileEntry{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out["/"+strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")] = fileEntry{
			typ: h.Typeflag, mode: h.Mode, uid: h.Uid, gid: h.Gid, link: h.Linkname, content: string(b),
		}
	}
}

// runImage pushes img to the registry as ref and runs it in containerd
// through the runtime driver, as the agent runs an App's instance, and
// returns its exit code and standard output.
func (e *env) runImage(t *testing.T, img ggcr.Image, repoTag string) (int, string) {
	t.Helper()
	ctx := ctxT(t, 2*time.Minute)
	ref := e.host + "/" + repoTag
	d, err := image.Push(ctx, img, ref, e.auth, nil)
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	// A fresh ID and log file each time: a log outlives its container.
	suffix := make([]byte, 4)
	rand.Read(suffix)
	id := strings.NewReplacer("/", "-", ":", "-").Replace(repoTag) + "-" + hex.EncodeToString(suffix)
	logPath := filepath.Join(e.dir, "logs", id+".log")
	spec := &runtime.ContainerSpec{
		ID:      id,
		Image:   ref + "@" + d.String(),
		LogPath: logPath,
	}
	if err := e.driver.Create(ctx, spec); err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() {
		if err := e.driver.Remove(context.Background(), id); err != nil {
			t.Errorf("remove: %v", err)
		}
	})
	if _, err := e.driver.Start(ctx, id); err != nil {
		t.Fatalf("start: %v", err)
	}
	ch, err := e.driver.Wait(ctx, id)
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	ex := <-ch
	if ex.Err != nil {
		t.Fatalf("wait: %v", ex.Err)
	}
	// Stop ends the run; the shim then waits for the log driver.
	if err := e.driver.Stop(ctx, id, time.Second); err != nil {
		t.Fatalf("stop: %v", err)
	}
	var b strings.Builder
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.Reset()
		r, err := logfile.Open(logPath, logfile.ReadOptions{})
		if err != nil {
			t.Fatalf("open log: %v", err)
		}
		for {
			l, err := r.Next(ctx)
			if err != nil {
				break
			}
			if l.Stream == logfile.Stdout {
				b.WriteString(l.Line + "\n")
			}
		}
		r.Close()
		if b.Len() > 0 || time.Now().After(deadline) {
			return ex.Code, b.String()
		}
		time.Sleep(20 * time.Millisecond)
	}
}
