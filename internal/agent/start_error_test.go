package agent

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
	"github.com/gantry-dev/gantry/internal/runtime"
)

// releasingNetwork is setupNetwork that can also release an attachment.
type releasingNetwork struct{ *setupNetwork }

func (releasingNetwork) Teardown(context.Context, string) error { return nil }

// A command that cannot be run (command: ["/nonexistent"]) was retried
// for ever as Pending/CreateFailed, even under restart policy never;
// Kubernetes fails such a pod (StartError), Docker exits 127 (review
// helper-162). Under never the instance fails at once; the other
// policies retry, as a restart would.
func TestACommandThatCannotRunFailsAnInstanceThatNeverRestarts(t *testing.T) {
	runcErr := errors.New(`failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: "/nonexistent": stat /nonexistent: no such file or directory: unknown`)
	for _, tc := range []struct {
		policy string
		want   int
	}{
		{v1.RestartNever, prepFailed},
		{v1.RestartOnFailure, prepRemoved}, // still retrying when the test stops it
		{v1.RestartAlways, prepRemoved},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			rt := &setupRuntime{taskErr: runcErr}
			sn := &setupNetwork{}
			w := newSetupWorker(t, rt, sn)
			w.a.net = releasingNetwork{sn}
			api := &flakyAPI{}
			srv := httptest.NewServer(api)
			t.Cleanup(srv.Close)
			c, err := client.New(client.Config{Server: srv.URL, Timeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			w.a.api = c
			w.desired.Spec.Template.RestartPolicy = tc.policy
			ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
			defer cancel()
			if got := w.prepare(ctx, false); got != tc.want {
				t.Fatalf("prepare = %d, want %d (calls %s)", got, tc.want, rt.log())
			}
			if tc.want != prepFailed {
				return
			}
			api.mu.Lock()
			defer api.mu.Unlock()
			last := api.statuses[len(api.statuses)-1]
			if last.Phase != v1.PhaseFailed || last.Reason != "StartError" || last.ExitCode == nil || *last.ExitCode != 128 {
				t.Errorf("status %s %s exit %v (%s), want Failed StartError, exit code 128", last.Phase, last.Reason, last.ExitCode, last.Message)
			}
		})
	}
}

// inspectRuntime is setupRuntime with a container to find.
type inspectRuntime struct {
	*setupRuntime
	c runtime.Container
}

func (f *inspectRuntime) Inspect(context.Context, string) (runtime.Container, error) { return f.c, nil }

// An instance failed with StartError keeps its container, made but never
// started (no task); after an agent restart it was set up again: pulled,
// attached to the network (host ports that may be another's by now),
// failed again with a new event, or, if the pull failed, turned from
// Failed back to Pending for ever (review helper-165).
func TestAStartErrorIsNotSetUpAgainAfterAnAgentRestart(t *testing.T) {
	sr := &setupRuntime{}
	sn := &setupNetwork{}
	w := newSetupWorker(t, sr, sn)
	rt := &inspectRuntime{setupRuntime: sr, c: runtime.Container{Status: runtime.StatusCreated, Labels: map[string]string{labelUID: w.uid}}}
	w.a.rt = rt
	w.a.net = releasingNetwork{sn}
	w.desired.Spec.Template.RestartPolicy = v1.RestartNever
	code := 128
	w.status = v1.InstanceStatus{Phase: v1.PhaseFailed, Reason: "StartError", ExitCode: &code}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.run(ctx) }()
	time.Sleep(300 * time.Millisecond)
	cancel()
	<-done
	if calls := sr.log(); calls != "" {
		t.Errorf("runtime calls %s after the restart; want none: the instance has failed for good", calls)
	}
}
