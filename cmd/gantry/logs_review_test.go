package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/agent"
	"github.com/gantry-dev/gantry/internal/apiserver"
	"github.com/gantry-dev/gantry/internal/apiserver/apiservertest"
	"github.com/gantry-dev/gantry/internal/logfile"
)

// startLogsCluster is an API server whose node n1 is an in-process agent
// (as under gantry up) holding instance web-1 with three log lines.
func startLogsCluster(t *testing.T) *rolloutServer {
	t.Helper()
	nodes := apiserver.NewNodes()
	a := agent.New(agent.Config{NodeName: "n1", DataDir: t.TempDir()}, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	nodes.AddLocal("n1", a.Handler())
	srv := apiservertest.Start(t, t.TempDir(), "127.0.0.1:0", apiserver.WithNodeProxy(nodes))
	ctx := context.Background()
	if err := srv.Store.Create(ctx, &v1.Node{TypeMeta: v1.TypeMeta{Kind: "Node"}, Metadata: v1.ObjectMeta{Name: "n1"}}); err != nil {
		t.Fatal(err)
	}
	inst := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: "web-1", Namespace: "default", Labels: map[string]string{v1.LabelApp: "web"}},
		Spec: v1.InstanceSpec{App: "web", Revision: 1, Image: "web:v1", Node: "n1"}}
	if err := srv.Store.Create(ctx, inst); err != nil {
		t.Fatal(err)
	}
	w, err := logfile.Create(a.LogPath("default", "web-1"), logfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"one", "two", "three"} {
		w.Write(logfile.Entry{Time: time.Now(), Stream: logfile.Stdout, Line: l})
	}
	w.Close()
	rs := &rolloutServer{url: srv.URL, token: srv.Token, st: srv.Store}
	return rs
}

// --tail 0 asks for the last 0 lines ("print only the last N lines"), as
// kubectl logs --tail=0: none. The agent reads tail=0 as "no limit", and
// the CLI once passed it on and printed the whole log.
func TestLogsTailZeroPrintsNothing(t *testing.T) {
	rs := startLogsCluster(t)
	out, err, _ := rs.run(t, 10*time.Second, "logs", "web-1", "--tail", "0")
	if err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("logs --tail 0: %q, %v; want no lines", out, err)
	}
	// No lines, but a wrong name is still an error.
	if _, err, _ := rs.run(t, 10*time.Second, "logs", "web-nope", "--tail", "0"); err == nil {
		t.Fatal("logs web-nope --tail 0 succeeded; want not found")
	}
}

// A follow ends without error when the instance is deleted. It once went
// on forever: the agent keeps the stream open on the log file, which
// outlives the instance.
func TestLogsFollowEndsWhenTheInstanceIsDeleted(t *testing.T) {
	saved := instanceCheck
	instanceCheck = 100 * time.Millisecond
	t.Cleanup(func() { instanceCheck = saved })
	rs := startLogsCluster(t)
	go func() {
		time.Sleep(time.Second)
		k, _ := v1.LookupKind("Instance")
		if _, err := rs.st.Delete(context.Background(), k, "default", "web-1", 0); err != nil {
			t.Error(err)
		}
	}()
	out, err, took := rs.run(t, 8*time.Second, "logs", "-f", "web-1")
	if err != nil || took > 5*time.Second {
		t.Fatalf("logs -f of an instance deleted after 1s: ended after %v with %v (output %q); want it to end soon after the deletion", took.Round(time.Millisecond), err, out)
	}
}

// Values that mean nothing are refused, saying what to give, as kubectl
// does for --tail below -1 and a --since that is not positive; they once
// printed every line, as if they were not given.
func TestLogsRefusesMeaninglessFlags(t *testing.T) {
	rs := startLogsCluster(t)
	for _, args := range [][]string{
		{"logs", "web-1", "--tail", "-5"},
		{"logs", "web-1", "--since", "-10m"},
		{"logs", "web-1", "-o", "yaml"},
	} {
		out, err, _ := rs.run(t, 10*time.Second, args...)
		if err == nil {
			t.Errorf("%s: exit 0 with %q; want an error naming the flag", strings.Join(args, " "), out)
		}
	}
}

// main exits 128+signal for a following command that Ctrl-C ended with
// context.Canceled (its comment names logs -f); logs -f once returned nil
// instead, and so exited 0, unlike events -w and rollout status.
func TestLogsFollowInterruptedIsNotSuccess(t *testing.T) {
	rs := startLogsCluster(t)
	root := newRootCmd()
	var out strings.Builder
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"--server", rs.url, "--token", rs.token, "logs", "-f", "web-1"})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(time.Second, cancel)
	err := root.ExecuteContext(ctx)
	if err == nil {
		t.Fatalf("logs -f ended by Ctrl-C returned nil: gantry exits 0 (events -w gives 130)")
	}
}
