package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
	"github.com/gantry-dev/gantry/internal/runtime"
)

// flakyAPI is an API server that accepts everything, except that fail
// decides which requests get 503 (the server restarting, say).
type flakyAPI struct {
	mu       sync.Mutex
	statuses []v1.InstanceStatus // accepted status writes, in order
	deletes  int                 // accepted DELETEs of the instance
	fail     func(r *http.Request, st *v1.InstanceStatus) bool
}

func (s *flakyAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var st *v1.InstanceStatus
	if strings.HasSuffix(r.URL.Path, "/status") {
		var i v1.Instance
		json.Unmarshal(body, &i)
		st = &i.Status
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil && s.fail(r, st) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `{"code":503,"message":"server restarting"}`)
		return
	}
	switch {
	case st != nil:
		s.statuses = append(s.statuses, *st)
	case r.Method == http.MethodDelete && strings.Contains(r.URL.Path, "/instances/"):
		s.deletes++
	}
	w.Header().Set("Content-Type", "application/json")
	if len(body) == 0 || r.Method == http.MethodDelete {
		body = []byte(`{"kind":"Instance","metadata":{"name":"web-1","namespace":"default"}}`)
	}
	w.Write(body)
}

func agentWithAPI(t *testing.T, rt Runtime, api *flakyAPI) *Agent {
	t.Helper()
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	c, err := client.New(client.Config{Server: srv.URL, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	return &Agent{
		cfg: Config{NodeName: "n1", DataDir: dir, SecretDir: filepath.Join(dir, "secrets"), ClusterDomain: "gantry.internal"},
		api: c, rt: rt, net: &noNetwork{}, log: slog.New(slog.DiscardHandler), workers: map[string]*worker{},
		policy: make(chan struct{}, 1),
	}
}

type noNetwork struct{ Network }

func (noNetwork) Teardown(context.Context, string) error { return nil }

// scriptedRuntime: a container that runs until stopped; exec probes pass
// until failFrom calls, then fail; Stop fails with stopErr.
type scriptedRuntime struct {
	Runtime
	mu       sync.Mutex
	execs    int
	failFrom int
	stopErr  error
	calls    []string
}

func (f *scriptedRuntime) Wait(context.Context, string) (<-chan runtime.Exit, error) {
	return make(chan runtime.Exit), nil
}

func (f *scriptedRuntime) Exec(context.Context, string, runtime.ExecOptions) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.execs++
	if f.execs >= f.failFrom {
		return 1, nil
	}
	return 0, nil
}

func (f *scriptedRuntime) Stop(context.Context, string, time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "Stop")
	return f.stopErr
}

func (f *scriptedRuntime) Remove(context.Context, string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "Remove")
	return f.stopErr
}

func instanceWith(h v1.Health) *v1.Instance {
	return &v1.Instance{
		TypeMeta: v1.TypeMeta{Kind: "Instance"},
		Metadata: v1.ObjectMeta{Namespace: "default", Name: "web-1", UID: "u1"},
		Spec:     v1.InstanceSpec{App: "web", Image: "busybox:v1", Node: "n1", Template: v1.Template{Health: h}},
	}
}

// deletingWorker is a worker of a for an instance marked for deletion.
func deletingWorker(a *Agent) *worker {
	inst := instanceWith(v1.Health{})
	now := time.Now()
	inst.Metadata.Deleting = &now
	// It was serving: it is drained before it stops.
	inst.Status = v1.InstanceStatus{Phase: v1.PhaseRunning, Ready: true, IP: "10.0.0.9", Node: "n1"}
	w := newWorker(a, inst)
	w.update(inst)
	return w
}

// A readiness flip whose status write fails once (the API server
// restarting) is written again until it lands: otherwise the API keeps
// Ready=true, and DNS and the ingress keep sending traffic to an instance
// whose readiness check fails.
func TestAStatusWriteThatFailedIsSentAgain(t *testing.T) {
	api := &flakyAPI{}
	failedOnce := false
	api.fail = func(r *http.Request, st *v1.InstanceStatus) bool {
		if st != nil && !st.Ready && st.Message != "" && !failedOnce {
			failedOnce = true
			return true
		}
		return false
	}
	rt := &scriptedRuntime{failFrom: 4}
	a := agentWithAPI(t, rt, api)
	probe := &v1.Probe{Exec: &v1.ExecCheck{Command: []string{"true"}}, Period: v1.Duration(30 * time.Millisecond), FailureThreshold: 1, SuccessThreshold: 1}
	w := newWorker(a, instanceWith(v1.Health{Readiness: probe}))
	w.ip = net.IPv4(10, 0, 0, 9)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.watchRun(ctx, time.Now(), false) }()
	time.Sleep(2 * time.Second)
	cancel()
	<-done
	api.mu.Lock()
	defer api.mu.Unlock()
	if !failedOnce {
		t.Fatalf("the readiness check never failed; statuses %+v", api.statuses)
	}
	last := api.statuses[len(api.statuses)-1]
	if last.Ready {
		t.Fatalf("2s after the readiness check started failing, the API still says Ready=true; %d status writes accepted", len(api.statuses))
	}
}

// The instance object is deleted only by the agent at the end of
// terminate, so a DELETE that fails is retried: nothing else would, and
// the instance would stay Terminating.
func TestTheFinalDeleteIsRetried(t *testing.T) {
	api := &flakyAPI{}
	deletesFailed := 0
	api.fail = func(r *http.Request, _ *v1.InstanceStatus) bool {
		if r.Method == http.MethodDelete && deletesFailed == 0 {
			deletesFailed++
			return true
		}
		return false
	}
	rt := &scriptedRuntime{}
	a := agentWithAPI(t, rt, api)
	w := deletingWorker(a)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	w.terminate(ctx)
	time.Sleep(500 * time.Millisecond)
	api.mu.Lock()
	defer api.mu.Unlock()
	if api.deletes == 0 {
		t.Fatalf("terminate returned after one failed DELETE of the instance object and never retried it")
	}
}

// While the container cannot be stopped (containerd restarting),
// terminate keeps trying and leaves the network and the instance object
// alone: the process may still run.
func TestTerminateKeepsTheObjectWhileContainerdIsAway(t *testing.T) {
	api := &flakyAPI{}
	rt := &scriptedRuntime{stopErr: fmt.Errorf("connection refused: %w", v1.ErrUnavailable)}
	a := agentWithAPI(t, rt, api)
	w := deletingWorker(a)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	w.terminate(ctx)
	rt.mu.Lock()
	stops := strings.Count(strings.Join(rt.calls, " "), "Stop")
	rt.mu.Unlock()
	if stops < 3 {
		t.Errorf("Stop was tried %d times in 2s while containerd was away; want it retried", stops)
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	if api.deletes > 0 {
		rt.mu.Lock()
		defer rt.mu.Unlock()
		t.Fatalf("runtime calls %v all failed (%v), yet the instance object was deleted: its container may still run", rt.calls, errors.Unwrap(rt.stopErr))
	}
}

// A worker made for an instance that is already draining (the agent
// restarted mid-drain) knows it from the start: its run must not treat
// an exited container as a crash to restart.
func TestAWorkerForADrainingInstanceStartsRemoving(t *testing.T) {
	inst := instanceWith(v1.Health{})
	now := time.Now()
	inst.Metadata.Deleting = &now
	if _, removing, _ := newWorker(&Agent{}, inst).state(); !removing {
		t.Fatal("a worker for an instance marked for deletion does not know it is removing")
	}
	inst.Metadata.Deleting = nil
	if _, removing, _ := newWorker(&Agent{}, inst).state(); removing {
		t.Fatal("a worker for a live instance thinks it is removing")
	}
}

// ReadySince marks the start of the current spell of readiness, whatever
// ended the last one (a readiness check, a liveness kill, a crash): a
// rollout's minReady counts from it.
func TestReadySinceRestartsAfterEveryBreak(t *testing.T) {
	api := &flakyAPI{}
	a := agentWithAPI(t, &scriptedRuntime{}, api)
	w := newWorker(a, instanceWith(v1.Health{}))
	ctx := context.Background()
	last := func() v1.InstanceStatus {
		t.Helper()
		api.mu.Lock()
		defer api.mu.Unlock()
		if len(api.statuses) == 0 {
			t.Fatal("no status was written")
		}
		return api.statuses[len(api.statuses)-1]
	}
	w.report(ctx, func(s *v1.InstanceStatus) { s.Phase, s.Ready = v1.PhaseRunning, true })
	first := last().ReadySince
	if first == nil {
		t.Fatal("a ready instance has no readySince")
	}
	w.report(ctx, func(s *v1.InstanceStatus) { s.Message = "still fine" })
	if got := last().ReadySince; got == nil || !got.Equal(*first) {
		t.Fatalf("readySince moved while the instance stayed ready: %v, was %v", got, first)
	}
	// A crash restart sets only Ready=false (worker.go's back-off path).
	w.report(ctx, func(s *v1.InstanceStatus) { s.Restarts++; s.Ready = false })
	if got := last().ReadySince; got != nil {
		t.Fatalf("a not-ready instance keeps readySince %v", got)
	}
	time.Sleep(10 * time.Millisecond)
	w.report(ctx, func(s *v1.InstanceStatus) { s.Ready = true })
	if got := last().ReadySince; got == nil || !got.After(*first) {
		t.Fatalf("ready again: readySince %v, want after the first spell's %v", got, first)
	}
}

// An agent restarted in the middle of a drain finishes that drain: the
// time it began is kept in the instance's directory, and a new worker
// waits only for what is left of the delay.
func TestARestartedAgentFinishesTheDrainItBegan(t *testing.T) {
	a := agentWithAPI(t, &scriptedRuntime{}, &flakyAPI{})
	w := deletingWorker(a)
	const delay = 30 * time.Second
	// The first agent began draining 29.5 s ago, then stopped.
	if err := os.MkdirAll(a.instanceDir(w.id), 0o700); err != nil {
		t.Fatal(err)
	}
	began := time.Now().Add(-delay + 500*time.Millisecond)
	if err := os.WriteFile(filepath.Join(a.instanceDir(w.id), drainFile), []byte(w.uid+" "+began.Format(time.RFC3339Nano)), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := w.drainDeadline(delay); !got.Equal(began.Add(delay)) {
		t.Fatalf("drain ends at %s, want %s (%s after it began)", got.Format(time.StampMilli), began.Add(delay).Format(time.StampMilli), delay)
	}
	// A fresh drain, one whose recorded start is in the future (the
	// clock was set back), or the record of an earlier instance of the
	// same name gets the whole delay, and is recorded.
	for _, recorded := range []string{"", w.uid + " " + time.Now().Add(time.Hour).Format(time.RFC3339Nano), "garbage",
		"an-older-uid " + began.Format(time.RFC3339Nano)} {
		path := filepath.Join(a.instanceDir(w.id), drainFile)
		os.Remove(path)
		if recorded != "" {
			os.WriteFile(path, []byte(recorded), 0o600)
		}
		before := time.Now()
		if got := w.drainDeadline(delay); got.Before(before.Add(delay)) {
			t.Errorf("recorded start %q: drain ends %s after now, want the whole %s", recorded, time.Until(got).Round(time.Millisecond), delay)
		}
		if b, err := os.ReadFile(path); err != nil || strings.TrimSpace(string(b)) == recorded {
			t.Errorf("recorded start %q: the new start was not written (%q, %v)", recorded, b, err)
		}
	}
	// And terminate waits for what is left, not the whole delay.
	w.desired.Spec.DrainDelay = v1.Duration(delay)
	os.WriteFile(filepath.Join(a.instanceDir(w.id), drainFile), []byte(w.uid+" "+time.Now().Add(-delay+time.Second).Format(time.RFC3339Nano)), 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w.terminate(ctx)
	if ctx.Err() != nil {
		t.Fatal("terminate drained from zero again after the restart: still waiting after 10s, with 1s of its drain left")
	}
	if _, err := os.Stat(a.instanceDir(w.id)); !os.IsNotExist(err) {
		t.Errorf("the instance's directory (with the drain's start) outlived it: %v", err)
	}
}

// Until the instance object is deleted, its drain record stays: an agent
// restarted between stopping the container and deleting the object
// must not drain the instance all over again.
func TestTheDrainRecordOutlivesTheContainerUntilTheObjectIsGone(t *testing.T) {
	api := &flakyAPI{fail: func(r *http.Request, _ *v1.InstanceStatus) bool { return r.Method == http.MethodDelete }}
	a := agentWithAPI(t, &scriptedRuntime{}, api)
	w := deletingWorker(a)
	os.MkdirAll(a.instanceDir(w.id), 0o700)
	os.WriteFile(filepath.Join(a.instanceDir(w.id), "hosts"), []byte("10.0.0.9 web-1\n"), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	w.terminate(ctx) // the DELETE keeps failing until ctx ends
	left, _ := os.ReadDir(a.instanceDir(w.id))
	if len(left) != 1 || left[0].Name() != drainFile {
		t.Fatalf("files left while the object exists: %v, want only %s", left, drainFile)
	}
	if _, ok := w.drainStart(filepath.Join(a.instanceDir(w.id), drainFile)); !ok {
		t.Fatal("the drain record is not this instance's")
	}
}

// Once drained and sent SIGTERM, an instance said "draining before stop"
// for its whole grace period, which hid a process that ignores SIGTERM
// (review helper-164). It says so now, under a reason that keeps an
// agent restarted meanwhile counting the grace period from the drain.
func TestTerminateSaysWhenSIGTERMIsSent(t *testing.T) {
	api := &flakyAPI{}
	rt := &scriptedRuntime{}
	a := agentWithAPI(t, rt, api)
	w := deletingWorker(a)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	w.terminate(ctx)
	api.mu.Lock()
	defer api.mu.Unlock()
	var reasons []string
	for _, st := range api.statuses {
		reasons = append(reasons, st.Reason)
	}
	i := slices.Index(reasons, "Killing")
	if slices.Index(reasons, "Draining") < 0 || i < slices.Index(reasons, "Draining") || !strings.Contains(api.statuses[i].Message, "SIGTERM, then SIGKILL") {
		t.Errorf("status reasons %v; want Draining, then Killing saying SIGTERM goes", reasons)
	}
	w.status = api.statuses[i]
	if !w.mayServe() {
		t.Error("an agent restarted after SIGTERM would skip the drain record and give the full grace period again")
	}
}
