package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/network"
	"github.com/gantry-dev/gantry/internal/runtime"
)

// setupRuntime fakes the calls setup makes of a Runtime and records them
// in order; the rest panics through the nil embedded interface.
type setupRuntime struct {
	Runtime

	mu       sync.Mutex
	calls    []string
	pullErr  error
	taskErr  error
	stopErrs []error // one per Stop, in order; nil once used up
	netns    string  // if set, CreateTask fails unless this file exists
}

func (f *setupRuntime) record(call string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
}

func (f *setupRuntime) EnsureImage(context.Context, string) (runtime.ImageInfo, error) {
	f.record("EnsureImage")
	return runtime.ImageInfo{}, f.pullErr
}

func (f *setupRuntime) Create(context.Context, *runtime.ContainerSpec) error {
	f.record("Create")
	return nil
}

func (f *setupRuntime) CreateTask(context.Context, string) error {
	f.record("CreateTask")
	if f.netns != "" {
		if _, err := os.Stat(f.netns); err != nil {
			return fmt.Errorf("runc: cannot join the network namespace: %w", err)
		}
	}
	return f.taskErr
}

func (f *setupRuntime) Stop(context.Context, string, time.Duration) error {
	f.record("Stop")
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.stopErrs) == 0 {
		return nil
	}
	err := f.stopErrs[0]
	f.stopErrs = f.stopErrs[1:]
	return err
}

func (f *setupRuntime) log() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.calls, ",")
}

// setupNetwork fakes the node network with a file standing for the
// namespace: replacing the file (a new inode) is what a teardown and a
// new namespace look like to NetNS.Unchanged.
type setupNetwork struct {
	Network

	dir        string
	setupErr   error
	replace    bool // Setup puts a new namespace in place
	prepareErr error
	slowNetNS  time.Duration // PrepareNetNS takes this long
}

func (f *setupNetwork) NetNSPath(id string) string { return filepath.Join(f.dir, id) }

func (f *setupNetwork) PrepareNetNS(_ context.Context, id string) (network.NetNS, error) {
	time.Sleep(f.slowNetNS)
	if f.prepareErr != nil {
		return network.NetNS{}, f.prepareErr
	}
	path := f.NetNSPath(id)
	if _, err := os.Stat(path); err != nil {
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			return network.NetNS{}, err
		}
	}
	return network.NetNSAt(path)
}

func (f *setupNetwork) Setup(_ context.Context, id string, _ []network.PortMapping) (*network.Attachment, error) {
	path := f.NetNSPath(id)
	if f.replace {
		// Made before the old one goes, so it cannot reuse its inode (a
		// real namespace's inode lives as long as a task holds it).
		if err := os.WriteFile(path+".new", nil, 0o600); err != nil {
			return nil, err
		}
		if err := os.Rename(path+".new", path); err != nil {
			return nil, err
		}
	}
	if f.setupErr != nil {
		os.Remove(path) // a failed ADD is torn down, namespace included
		return nil, f.setupErr
	}
	return &network.Attachment{NetNSPath: path, IP: net.IPv4(10, 0, 0, 9)}, nil
}

func (f *setupNetwork) SetPolicy(context.Context, []network.Member) error { return nil }

func (f *setupNetwork) WriteResolvConf(dir, _, _ string) (string, error) {
	path := filepath.Join(dir, network.ResolvConfFile)
	return path, os.WriteFile(path, nil, 0o644)
}

func (f *setupNetwork) WriteHosts(dir, _ string, _ net.IP) (string, error) {
	path := filepath.Join(dir, network.HostsFile)
	return path, os.WriteFile(path, []byte("10.0.0.9\tweb-1\n"), 0o644)
}

func newSetupWorker(t *testing.T, rt *setupRuntime, nw *setupNetwork) *worker {
	t.Helper()
	dir := t.TempDir()
	nw.dir = t.TempDir()
	a := &Agent{
		cfg: Config{NodeName: "n1", DataDir: dir, SecretDir: filepath.Join(dir, "secrets"), ClusterDomain: "gantry.internal"},
		rt:  rt, net: nw, log: slog.New(slog.DiscardHandler), workers: map[string]*worker{},
		policy: make(chan struct{}, 1),
	}
	inst := &v1.Instance{
		Metadata: v1.ObjectMeta{Namespace: "default", Name: "web-1", UID: "u1"},
		Spec:     v1.InstanceSpec{App: "web", Image: "busybox:v1", Revision: 1},
	}
	return newWorker(a, inst)
}

// TestSetupNeverStartsATaskInAReplacedNamespace checks that whenever an
// attempt fails after the task may have been made, that task is dropped
// before another is made, so that the task started is one that joined
// the attached namespace.
func TestSetupNeverStartsATaskInAReplacedNamespace(t *testing.T) {
	errADD := errors.New("CNI ADD: boom")
	for _, tt := range []struct {
		name     string
		pullErr  error   // of EnsureImage
		taskErr  error   // of CreateTask
		stopErrs []error // of the Stops, in order
		setupErr error   // of network.Setup
		replace  bool    // network.Setup replaces the namespace
		wantErr  string  // in the first attempt's error; "" for none
		pull     bool    // the error is a pull error
		wantLog  string  // runtime calls of the first attempt
		wantLog2 string  // and of a second attempt that succeeds
	}{
		{
			name:     "a failed attachment drops the task",
			setupErr: errADD,
			wantErr:  "attach network: CNI ADD: boom",
			wantLog:  "EnsureImage,Create,CreateTask,Stop",
			wantLog2: "EnsureImage,Create,CreateTask",
		},
		{
			name:     "a task that cannot be dropped now is dropped before the next",
			stopErrs: []error{errors.New("containerd away")},
			setupErr: errADD,
			wantErr:  "attach network",
			wantLog:  "EnsureImage,Create,CreateTask,Stop",
			wantLog2: "EnsureImage,Create,Stop,CreateTask",
		},
		{
			name:     "a namespace replaced during the attempt fails it",
			replace:  true,
			wantErr:  "was replaced while the container was created",
			wantLog:  "EnsureImage,Create,CreateTask,Stop",
			wantLog2: "EnsureImage,Create,CreateTask",
		},
		{
			name:     "the network failure is reported, not the task's that followed",
			taskErr:  errors.New("runc: cannot join netns"),
			setupErr: errADD,
			wantErr:  "attach network: CNI ADD: boom",
			wantLog:  "EnsureImage,Create,CreateTask,Stop",
			wantLog2: "EnsureImage,Create,CreateTask",
		},
		{
			name:     "a pull error wins over a network error",
			pullErr:  fmt.Errorf("not found: %w", v1.ErrNotFound),
			setupErr: errADD,
			wantErr:  "pull busybox:v1",
			pull:     true,
			wantLog:  "EnsureImage,Stop",
			wantLog2: "EnsureImage,Create,CreateTask",
		},
		{
			name:     "a setup that works makes one task and drops nothing",
			wantLog:  "EnsureImage,Create,CreateTask",
			wantLog2: "EnsureImage,Create,CreateTask",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rt := &setupRuntime{pullErr: tt.pullErr, taskErr: tt.taskErr, stopErrs: tt.stopErrs}
			nw := &setupNetwork{setupErr: tt.setupErr, replace: tt.replace}
			w := newSetupWorker(t, rt, nw)
			ctx := context.Background()
			err := w.setup(ctx, false)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("setup: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("setup error = %v, want one saying %q", err, tt.wantErr)
			}
			var pe *pullError
			if got := errors.As(err, &pe); got != tt.pull {
				t.Errorf("pull error = %v, want %v (%v)", got, tt.pull, err)
			}
			if got := rt.log(); got != tt.wantLog {
				t.Errorf("first attempt: runtime calls %s, want %s", got, tt.wantLog)
			}
			// The cause goes away; the next attempt must work and must
			// not start a task left from the first one.
			rt.mu.Lock()
			rt.calls, rt.pullErr, rt.taskErr = nil, nil, nil
			rt.mu.Unlock()
			nw.setupErr, nw.replace = nil, false
			if err := w.setup(ctx, false); err != nil {
				t.Fatalf("second attempt: %v", err)
			}
			if got := rt.log(); got != tt.wantLog2 {
				t.Errorf("second attempt: runtime calls %s, want %s", got, tt.wantLog2)
			}
			if w.dropTask {
				t.Error("a task is still owed a drop after a setup that worked")
			}
		})
	}

	t.Run("the task waits for its namespace, made meanwhile", func(t *testing.T) {
		rt := &setupRuntime{}
		nw := &setupNetwork{slowNetNS: 50 * time.Millisecond}
		w := newSetupWorker(t, rt, nw)
		rt.netns = nw.NetNSPath(w.id)
		if err := w.setup(context.Background(), false); err != nil {
			t.Fatalf("setup: %v", err)
		}
		if got := rt.log(); got != "EnsureImage,Create,CreateTask" {
			t.Fatalf("runtime calls %s", got)
		}
	})

	t.Run("a namespace that cannot be made fails the attempt with no task made", func(t *testing.T) {
		rt := &setupRuntime{}
		nw := &setupNetwork{prepareErr: errors.New("unshare: no space left on device")}
		w := newSetupWorker(t, rt, nw)
		err := w.setup(context.Background(), false)
		if err == nil || !strings.Contains(err.Error(), "attach network: unshare") {
			t.Fatalf("setup = %v, want the namespace error", err)
		}
		if got := rt.log(); got != "EnsureImage,Create" {
			t.Fatalf("runtime calls %s, want the container record and no task", got)
		}
		nw.prepareErr = nil
		rt.mu.Lock()
		rt.calls = nil
		rt.mu.Unlock()
		if err := w.setup(context.Background(), false); err != nil {
			t.Fatalf("second attempt: %v", err)
		}
		if got := rt.log(); got != "EnsureImage,Create,CreateTask" {
			t.Fatalf("second attempt: runtime calls %s", got)
		}
	})

	t.Run("a task that still cannot be dropped fails the attempt before another is made", func(t *testing.T) {
		rt := &setupRuntime{stopErrs: []error{errors.New("away"), errors.New("still away")}}
		nw := &setupNetwork{setupErr: errADD}
		w := newSetupWorker(t, rt, nw)
		if err := w.setup(context.Background(), false); err == nil {
			t.Fatal("first attempt worked")
		}
		nw.setupErr = nil
		rt.mu.Lock()
		rt.calls = nil
		rt.mu.Unlock()
		err := w.setup(context.Background(), false)
		if err == nil || !strings.Contains(err.Error(), "could not be dropped") {
			t.Fatalf("second attempt = %v, want it to fail on the drop", err)
		}
		if got := rt.log(); strings.Contains(got, "CreateTask") {
			t.Fatalf("runtime calls %s: a task was made next to one that could not be dropped", got)
		}
	})
}

// TestFoundContainer checks what a worker does with the container it
// finds under its id when it starts, after an agent restart or a new
// instance of the same name.
func TestFoundContainer(t *testing.T) {
	mine := map[string]string{labelUID: "u1"}
	for _, tt := range []struct {
		name         string
		c            runtime.Container
		err          error
		adopt, stale bool
		drop         bool
	}{
		{name: "none", err: fmt.Errorf("no container: %w", v1.ErrNotFound)},
		{name: "containerd not answering", err: fmt.Errorf("dial: %w", v1.ErrUnavailable)},
		{name: "running: adopted", c: runtime.Container{Labels: mine, Status: runtime.StatusRunning}, adopt: true},
		{name: "exited while the agent was away: adopted", c: runtime.Container{Labels: mine, Status: runtime.StatusStopped}, adopt: true},
		{name: "never started: set up again, its task dropped first", c: runtime.Container{Labels: mine, Status: runtime.StatusCreated}, drop: true},
		{name: "an older instance's: stale", c: runtime.Container{Labels: map[string]string{labelUID: "u0"}, Status: runtime.StatusRunning}, stale: true},
		{name: "an older instance's, never started: stale", c: runtime.Container{Labels: map[string]string{labelUID: "u0"}, Status: runtime.StatusCreated}, stale: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := newSetupWorker(t, &setupRuntime{}, &setupNetwork{})
			adopt, stale := w.found(tt.c, tt.err)
			if adopt != tt.adopt || stale != tt.stale || w.dropTask != tt.drop {
				t.Errorf("adopt %v, stale %v, drop %v; want %v, %v, %v", adopt, stale, w.dropTask, tt.adopt, tt.stale, tt.drop)
			}
		})
	}

	t.Run("a never-started task is dropped before the new one is made", func(t *testing.T) {
		rt := &setupRuntime{}
		w := newSetupWorker(t, rt, &setupNetwork{})
		adopt, _ := w.found(runtime.Container{Labels: mine, Status: runtime.StatusCreated}, nil)
		if err := w.setup(context.Background(), adopt); err != nil {
			t.Fatal(err)
		}
		if got, want := rt.log(), "EnsureImage,Create,Stop,CreateTask"; got != want {
			t.Errorf("runtime calls %s, want %s", got, want)
		}
	})
}
