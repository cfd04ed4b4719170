package runtime

// A fake containerd (container store and task service, in process) for
// review tests of Stop, Wait and Exec: no containerd is needed.

import (
	"context"
	"log/slog"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

type fakeContainers struct{ ids map[string]bool }

func (s *fakeContainers) Get(ctx context.Context, id string) (containers.Container, error) {
	if !s.ids[id] {
		return containers.Container{}, errdefs.ErrNotFound
	}
	spec, err := typeurl.MarshalAny(&specs.Spec{Process: &specs.Process{Args: []string{"sleep"}, Cwd: "/"}})
	if err != nil {
		return containers.Container{}, err
	}
	return containers.Container{ID: id, Runtime: containers.RuntimeInfo{Name: runcRuntime}, Spec: spec}, nil
}
func (s *fakeContainers) List(context.Context, ...string) ([]containers.Container, error) {
	return nil, nil
}
func (s *fakeContainers) Create(ctx context.Context, c containers.Container) (containers.Container, error) {
	return c, nil
}
func (s *fakeContainers) Update(ctx context.Context, c containers.Container, _ ...string) (containers.Container, error) {
	return c, nil
}
func (s *fakeContainers) Delete(context.Context, string) error { return nil }

// fakeProc is one process (the task's, execID "", or an exec) of the fake.
type fakeProc struct {
	status   task.Status
	code     uint32
	exitedCh chan struct{}
	deleted  bool
}

type fakeSignal struct {
	execID string
	sig    syscall.Signal
	at     time.Duration
}

type fakeTasks struct {
	tasks.TasksClient // unimplemented calls panic

	mu    sync.Mutex
	start time.Time
	procs map[string]*fakeProc // by exec ID, "" is the task
	kills []fakeSignal
	// termExitAfter: a SIGTERM makes the process exit after this long
	// (negative: ignores SIGTERM). killExitAfter likewise for SIGKILL.
	termExitAfter, killExitAfter time.Duration
	// waitErrs are returned, in order, by the first Wait calls (per exec
	// ID) instead of waiting.
	waitErrs map[string][]error
	deletes  []string
}

func newFakeTasks() *fakeTasks {
	return &fakeTasks{start: time.Now(), procs: map[string]*fakeProc{"": {status: task.Status_RUNNING, exitedCh: make(chan struct{})}}, waitErrs: map[string][]error{}}
}

func (f *fakeTasks) proc(execID string) *fakeProc {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.procs[execID]
}

func (f *fakeTasks) exit(execID string, code uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.procs[execID]
	if p == nil || p.status == task.Status_STOPPED {
		return
	}
	p.status, p.code = task.Status_STOPPED, code
	close(p.exitedCh)
}

func (f *fakeTasks) Get(ctx context.Context, in *tasks.GetRequest, _ ...grpc.CallOption) (*tasks.GetResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.procs[in.ExecID]
	if p == nil || p.deleted {
		return nil, status.Error(codes.NotFound, "not found")
	}
	return &tasks.GetResponse{Process: &task.Process{ContainerID: in.ContainerID, ID: in.ContainerID, Pid: 42, Status: p.status, ExitStatus: p.code}}, nil
}

func (f *fakeTasks) Wait(ctx context.Context, in *tasks.WaitRequest, _ ...grpc.CallOption) (*tasks.WaitResponse, error) {
	key := in.ExecID
	if key != "" {
		key = "exec" // any exec
	}
	f.mu.Lock()
	if errs := f.waitErrs[key]; len(errs) > 0 {
		f.waitErrs[key] = errs[1:]
		f.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		return nil, errs[0]
	}
	p := f.procs[in.ExecID]
	f.mu.Unlock()
	if p == nil {
		return nil, status.Error(codes.NotFound, "not found")
	}
	select {
	case <-p.exitedCh:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return &tasks.WaitResponse{ExitStatus: p.code, ExitedAt: timestamppb.Now()}, nil
}

func (f *fakeTasks) Kill(ctx context.Context, in *tasks.KillRequest, _ ...grpc.CallOption) (*emptypb.Empty, error) {
	f.mu.Lock()
	sig := syscall.Signal(in.Signal)
	f.kills = append(f.kills, fakeSignal{execID: in.ExecID, sig: sig, at: time.Since(f.start)})
	after := f.termExitAfter
	if sig == syscall.SIGKILL {
		after = f.killExitAfter
	}
	f.mu.Unlock()
	if after >= 0 {
		time.AfterFunc(after, func() { f.exit(in.ExecID, 128+uint32(sig)) })
	}
	return &emptypb.Empty{}, nil
}

func (f *fakeTasks) Delete(ctx context.Context, in *tasks.DeleteTaskRequest, _ ...grpc.CallOption) (*tasks.DeleteResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deletes = append(f.deletes, "")
	f.procs[""].deleted = true
	return &tasks.DeleteResponse{}, nil
}

func (f *fakeTasks) DeleteProcess(ctx context.Context, in *tasks.DeleteProcessRequest, _ ...grpc.CallOption) (*tasks.DeleteResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deletes = append(f.deletes, in.ExecID)
	if p := f.procs[in.ExecID]; p != nil {
		p.deleted = true
	}
	return &tasks.DeleteResponse{}, nil
}

func (f *fakeTasks) Exec(ctx context.Context, in *tasks.ExecProcessRequest, _ ...grpc.CallOption) (*emptypb.Empty, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.procs[in.ExecID] = &fakeProc{status: task.Status_CREATED, exitedCh: make(chan struct{})}
	return &emptypb.Empty{}, nil
}

func (f *fakeTasks) Start(ctx context.Context, in *tasks.StartRequest, _ ...grpc.CallOption) (*tasks.StartResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.procs[in.ExecID].status = task.Status_RUNNING
	return &tasks.StartResponse{Pid: 43}, nil
}

func (f *fakeTasks) CloseIO(context.Context, *tasks.CloseIORequest, ...grpc.CallOption) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

func (f *fakeTasks) signals() []fakeSignal {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeSignal(nil), f.kills...)
}

// fakeDriver is a Driver on the fake, with one container "c1".
func fakeDriver(t *testing.T, ft *fakeTasks) *Driver {
	t.Helper()
	c, err := client.New("", client.WithDefaultRuntime(runcRuntime), client.WithServices(
		client.WithContainerStore(&fakeContainers{ids: map[string]bool{"c1": true}}),
		client.WithTaskClient(ft),
	))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Address: "fake"}.withDefaults()
	d := &Driver{cfg: cfg, log: slog.New(slog.DiscardHandler), client: c, facts: map[digest.Digest]imageFacts{}}
	d.clog = containerdLogger(d.log)
	return d
}
