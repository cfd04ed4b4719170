package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
	"github.com/gantry-dev/gantry/internal/apiserver/apiservertest"
	"github.com/gantry-dev/gantry/internal/store"
)

type rolloutServer struct {
	url, token string
	st         *store.Store
	c          *client.Client
	// logPath is where its node keeps an instance's log (startLogsCluster).
	logPath func(ns, name string) string
}

func startRolloutServer(t *testing.T) *rolloutServer {
	t.Helper()
	srv := apiservertest.Start(t, t.TempDir(), "127.0.0.1:0")
	rs := &rolloutServer{url: srv.URL, token: srv.Token, st: srv.Store}
	var err error
	rs.c, err = client.New(client.Config{Server: rs.url, Token: rs.token})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// run runs the CLI with a deadline of its own so that a hang shows.
func (rs *rolloutServer) run(t *testing.T, limit time.Duration, args ...string) (string, error, time.Duration) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"--config", filepath.Join(t.TempDir(), "none"), "--server", rs.url, "--token", rs.token}, args...))
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	start := time.Now()
	err := root.ExecuteContext(ctx)
	return out.String(), err, time.Since(start)
}

func applyRolloutApp(t *testing.T, rs *rolloutServer, name, image string) {
	t.Helper()
	o, err := v1.DecodeManifest([]byte(fmt.Sprintf("kind: App\nname: %s\nimage: %s\nreplicas: 1\n", name, image)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rs.c.Apply(context.Background(), o); err != nil {
		t.Fatal(err)
	}
}

// rollout status of an app that does not exist must say so, not wait
// until --timeout (or forever without it).
func TestRolloutStatusOfAMissingApp(t *testing.T) {
	rs := startRolloutServer(t)
	out, err, took := rs.run(t, 20*time.Second, "rollout", "status", "app/nope", "--timeout", "3s")
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("rollout status app/nope after %v: err=%v out=%q; want a not-found error at once", took.Round(time.Millisecond), err, out)
	}
}

// An empty name ("app/" or "") must be refused before any request.
func TestAnEmptyAppNameIsRefused(t *testing.T) {
	rs := startRolloutServer(t)
	applyRolloutApp(t, rs, "hello", "hello:v1")
	var bad []string
	for _, args := range [][]string{
		{"rollout", "status", "app/", "--timeout", "3s"},
		{"rollout", "undo", "app/"},
		{"rollout", "pause", "app/"},
		{"rollout", "restart", ""},
		{"rollout", "history", "app/"},
	} {
		out, err, took := rs.run(t, 20*time.Second, args...)
		if err == nil || !strings.Contains(strings.ToLower(err.Error()), "name") || took > 2*time.Second {
			bad = append(bad, fmt.Sprintf("%q: after %v err=%v out=%q", strings.Join(args, " "), took.Round(time.Millisecond), err, out))
		}
	}
	if len(bad) > 0 {
		t.Fatal("empty app names not refused clearly:\n" + strings.Join(bad, "\n"))
	}
}

// With the server unreachable, rollout status must fail and say so, as
// every other command does, instead of retrying silently.
func TestRolloutStatusWithTheServerUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	rs := &rolloutServer{url: "http://" + addr, token: "x"}
	out, err, took := rs.run(t, 20*time.Second, "rollout", "status", "app/hello", "--timeout", "3s")
	if err == nil || strings.Contains(err.Error(), "timed out") {
		t.Fatalf("rollout status with no server: after %v err=%v out=%q; want a connection error at once", took.Round(time.Millisecond), err, out)
	}
}

// A paused app whose current revision has completed its rollout is rolled
// out: status must exit 0, not wait forever for a resume.
func TestRolloutStatusOfAPausedAppThatCompleted(t *testing.T) {
	rs := startRolloutServer(t)
	applyRolloutApp(t, rs, "hello", "hello:v1")
	if _, err := store.Mutate(context.Background(), rs.st, "default", "hello", func(a *v1.App) error {
		a.Spec.Paused = true
		a.Status.Phase, a.Status.StableRevision = v1.AppRunning, a.Status.Revision
		a.Status.Replicas, a.Status.ReadyReplicas, a.Status.UpdatedReplicas, a.Status.UpdatedReady = 1, 1, 1, 1
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	out, err, took := rs.run(t, 20*time.Second, "rollout", "status", "app/hello", "--timeout", "3s")
	if err != nil {
		t.Fatalf("rollout status of a paused, fully rolled-out app after %v: err=%v out=%q; want exit 0", took.Round(time.Millisecond), err, out)
	}
}

// The other bad inputs fail, quickly, with a message.
func TestRolloutBadInputsFail(t *testing.T) {
	rs := startRolloutServer(t)
	applyRolloutApp(t, rs, "hello", "hello:v1")
	for _, args := range [][]string{
		{"rollout", "undo", "app/hello"},
		{"rollout", "undo", "app/hello", "--to-revision", "7"},
		{"rollout", "undo", "app/hello", "--to-revision", "-1"},
		{"rollout", "undo", "app/hello", "--to-revision", "1"},
		{"rollout", "undo", "app/nope"},
		{"rollout", "history", "app/nope"},
		{"rollout", "history", "app/hello", "--revision", "9"},
		{"rollout", "history", "app/hello", "--revision", "-2"},
		{"rollout", "pause", "instance/x"},
		{"rollout", "undo", "app/a/b"},
		{"-n", "ghost", "rollout", "undo", "app/hello"},
		{"rollout", "undo", "app/Hello"},
		{"rollout", "status", "app/hello", "--timeout", "1s"},
	} {
		out, err, took := rs.run(t, 20*time.Second, args...)
		if err == nil || err.Error() == "" || took > 15*time.Second {
			t.Errorf("%q: err=%v after %v (out %q); want a quick failure with a message", strings.Join(args, " "), err, took.Round(time.Millisecond), out)
		}
	}
	out, err, _ := rs.run(t, 20*time.Second, "rollout", "history", "app/hello")
	if err != nil || !strings.Contains(out, "REVISION") {
		t.Errorf("history: %v\n%s", err, out)
	}
	// The messages name the flag, and a revision not made yet is not
	// taken for a pruned one.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"rollout", "undo", "app/hello", "--to-revision", "-1"}, "--to-revision -1: revisions are numbered from 1"},
		{[]string{"rollout", "undo", "app/hello", "--to-revision", "7"}, "has no revision 7: its current revision is 1"},
	} {
		if _, err, _ := rs.run(t, 20*time.Second, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v; want %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}

// history --revision shows what a revision ran; the list marks the
// current revision and the stable one.
func TestRolloutHistoryOfOneRevision(t *testing.T) {
	rs := startRolloutServer(t)
	applyRolloutApp(t, rs, "hello", "hello:v1")
	applyRolloutApp(t, rs, "hello", "hello:v2")
	rs.changeApp(t, func(a *v1.App) { a.Status.StableRevision = 1 })
	out, err, _ := rs.run(t, 20*time.Second, "rollout", "history", "app/hello", "--revision", "1")
	for _, want := range []string{"app/hello revision 1 (stable)", "Image:", "Template:", "  image: hello:v1"} {
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("history --revision 1: err=%v, output lacks %q:\n%s", err, want, out)
		}
	}
	out, err, _ = rs.run(t, 20*time.Second, "rollout", "history", "app/hello")
	if err != nil || !strings.Contains(out, "1 (stable)") || !strings.Contains(out, "2 (current)") {
		t.Errorf("history: err=%v; want revisions 1 (stable) and 2 (current):\n%s", err, out)
	}
	_, err, _ = rs.run(t, 20*time.Second, "rollout", "history", "app/hello", "--revision", "5")
	if err == nil || !strings.Contains(err.Error(), "no revision 5: its current revision is 2") {
		t.Errorf("history --revision 5: err=%v; want one that gives the current revision", err)
	}
	// -o gives the Revision objects, all of them or the one asked for.
	out, err, _ = rs.run(t, 20*time.Second, "rollout", "history", "app/hello", "-o", "json")
	var list struct {
		Kind  string
		Items []v1.Revision
	}
	if err != nil || json.Unmarshal([]byte(out), &list) != nil || list.Kind != "RevisionList" || len(list.Items) != 2 || list.Items[0].Spec.Number != 1 || list.Items[1].Spec.Template.Image != "hello:v2" {
		t.Errorf("history -o json: err=%v, %+v:\n%s", err, list, out)
	}
	out, err, _ = rs.run(t, 20*time.Second, "rollout", "history", "app/hello", "--revision", "1", "-o", "yaml")
	if err != nil || !strings.Contains(out, "kind: Revision") || !strings.Contains(out, "image: hello:v1") || strings.Contains(out, "hello:v2") {
		t.Errorf("history --revision 1 -o yaml: err=%v:\n%s", err, out)
	}
	if _, err, _ = rs.run(t, 20*time.Second, "rollout", "history", "app/hello", "-o", "wide"); err == nil || !strings.Contains(err.Error(), "use json or yaml") {
		t.Errorf("history -o wide: %v, want a refusal naming the formats", err)
	}
	if _, err := rs.st.Delete(context.Background(), store.KindFor[*v1.Revision](), "default", "hello-1", 0); err != nil {
		t.Fatal(err)
	}
	_, err, _ = rs.run(t, 20*time.Second, "rollout", "history", "app/hello", "--revision", "1")
	if err == nil || !strings.Contains(err.Error(), "no revision 1 any more") || !strings.Contains(err.Error(), "revisionHistoryLimit") {
		t.Errorf("history --revision 1 after it was pruned: err=%v; want one that names the history limit", err)
	}
}

// A paused app whose rollout failed and was rolled back is not waiting
// for a resume: status must report the failure and exit 1.
func TestRolloutStatusOfAPausedAppThatWasRolledBack(t *testing.T) {
	rs := startRolloutServer(t)
	applyRolloutApp(t, rs, "hello", "hello:v1")
	rs.statusExitsOne(t, "rolled back", func(a *v1.App) {
		a.Spec.Paused = true
		a.Status.Phase = v1.AppRolledBack
		a.Status.RolledBack = &v1.RollbackRecord{From: a.Status.Revision + 1, To: a.Status.Revision, Revision: a.Status.Revision, Reason: "progress deadline exceeded"}
	})
}

// statusExitsOne changes app hello as the controller would, then expects
// rollout status to print want and exit 1 at once.
func (rs *rolloutServer) statusExitsOne(t *testing.T, want string, change func(*v1.App)) {
	t.Helper()
	rs.changeApp(t, change)
	out, err, took := rs.run(t, 20*time.Second, "rollout", "status", "app/hello", "--timeout", "3s")
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 1 || !strings.Contains(out, want) {
		t.Fatalf("rollout status after %v: err=%v out=%q; want %q and exit 1", took.Round(time.Millisecond), err, out, want)
	}
}

// An App stuck short of its replicas for a whole progress deadline
// outside a rollout (a scale-up with no room) ends the wait with exit 1.
func TestRolloutStatusOfAStalledApp(t *testing.T) {
	rs := startRolloutServer(t)
	applyRolloutApp(t, rs, "hello", "hello:v1")
	rs.statusExitsOne(t, "no progress for 2m0s", func(a *v1.App) {
		two := int32(2)
		a.Spec.Replicas = &two
		a.Status.Phase, a.Status.StableRevision, a.Status.Stalled = v1.AppDegraded, a.Status.Revision, true
		a.Status.Message = "scaling to 2: 1 ready; no progress for 2m0s"
		a.Status.Replicas, a.Status.ReadyReplicas, a.Status.UpdatedReplicas, a.Status.UpdatedReady = 2, 1, 2, 1
		a.Status.ObservedReplicas = 2
	})
	// Scaled since (the status speaks of 2, the App asks for 3): the
	// stall is not this count's, and status waits for the controller.
	rs.changeApp(t, func(a *v1.App) {
		three := int32(3)
		a.Spec.Replicas = &three
	})
	out, err, _ := rs.run(t, 20*time.Second, "rollout", "status", "app/hello", "--timeout", "1s")
	if err == nil || !strings.Contains(err.Error(), "timed out") || strings.Contains(out, "stuck") {
		t.Fatalf("rollout status with a stall older than the last scale: err=%v out=%q; want it to wait (here until --timeout)", err, out)
	}
}

// Scaled to 0 before the new revision ever ran, the rollout did not
// finish: status says so and exits 1 rather than report success.
func TestRolloutStatusOfARolloutScaledToZero(t *testing.T) {
	rs := startRolloutServer(t)
	applyRolloutApp(t, rs, "hello", "hello:v1")
	rs.statusExitsOne(t, "did not finish: scaled to 0", func(a *v1.App) {
		zero := int32(0)
		a.Spec.Replicas = &zero
		a.Status.Revision, a.Status.StableRevision, a.Status.Phase = 2, 1, v1.AppRunning
		a.Status.Message = "scaled to 0 before revision 2 was ready; revision 1 stays the one to roll back to"
		a.Status.Replicas, a.Status.ReadyReplicas, a.Status.UpdatedReplicas, a.Status.UpdatedReady = 0, 0, 0, 0
	})
}

// changeApp changes app hello in the store, behind the API's back.
func (rs *rolloutServer) changeApp(t *testing.T, change func(*v1.App)) {
	t.Helper()
	if _, err := store.Mutate(context.Background(), rs.st, "default", "hello", func(a *v1.App) error {
		change(a)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// apply --dry-run says what would happen and changes nothing; diff shows
// it, with kubectl diff's exit status.
func TestApplyDryRunAndDiff(t *testing.T) {
	rs, write := startDiffServer(t)
	applyRolloutApp(t, rs, "hello", "hello:v1")
	same := write("same.yaml", "kind: App\nname: hello\nimage: hello:v1\nreplicas: 1\n")
	v2 := write("v2.yaml", "kind: App\nname: hello\nimage: hello:v2\nreplicas: 1\n---\nkind: App\nname: other\nimage: other:v1\n")

	out, err, _ := rs.run(t, 20*time.Second, "apply", "-f", v2, "--dry-run")
	if err != nil || !strings.Contains(out, "app/hello configured (server dry run)") || !strings.Contains(out, "app/other created (server dry run)") {
		t.Errorf("apply --dry-run: err=%v out=%q", err, out)
	}
	if a, err := client.Get[*v1.App](context.Background(), rs.c, "default", "hello"); err != nil || a.Spec.Image != "hello:v1" || a.Status.Revision != 1 {
		t.Errorf("after the dry run hello is %v (revision %d), err %v; want it untouched", a.Spec.Image, a.Status.Revision, err)
	}
	if _, err := client.Get[*v1.App](context.Background(), rs.c, "default", "other"); !errors.Is(err, v1.ErrNotFound) {
		t.Errorf("a dry run created app other: %v", err)
	}
	if _, err, _ := rs.run(t, 20*time.Second, "apply", "-f", v2, "--dry-run=client"); err == nil {
		t.Errorf("apply --dry-run=client was accepted")
	}

	out, err, _ = rs.run(t, 20*time.Second, "diff", "-f", same)
	if err != nil || out != "" {
		t.Errorf("diff of the live manifest: err=%v out=%q; want exit 0 and no output", err, out)
	}
	out, err, _ = rs.run(t, 20*time.Second, "diff", "-f", v2)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Errorf("diff with changes: err=%v; want exit status 1", err)
	}
	for _, want := range []string{"-  image: hello:v1", "+  image: hello:v2", "+kind: App", "+  name: other"} {
		if !strings.Contains(out, want) {
			t.Errorf("diff output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "status:") || strings.Contains(out, "uid:") {
		t.Errorf("diff shows status or bookkeeping:\n%s", out)
	}
	bad := write("bad.yaml", "kind: App\nname: hello\nimage: hello:v3\nreplicas: -4\n")
	if _, err, _ := rs.run(t, 20*time.Second, "diff", "-f", bad); !errors.As(err, &ee) || ee.code != 2 {
		t.Errorf("diff of an invalid manifest: err=%v; want exit status 2", err)
	}
}

// Common slips got cobra's bare argument counts ("accepts 1 arg(s),
// received 2") or a misleading not found; they say what to write.
func TestCommonSlipsSayWhatToWrite(t *testing.T) {
	rs := startRolloutServer(t)
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"scale", "app", "hello", "--replicas", "2"}, "give the app as one argument: app/hello"},
		{[]string{"rollout", "status", "app", "hello"}, "give the app as one argument: app/hello"},
		{[]string{"rollout", "undo", "hello", "world"}, "give one app, as app/NAME"},
		{[]string{"exec", "hello-x"}, "after --, the command to run"},
		{[]string{"exec", "app/hello", "--", "ls"}, "exec runs in one instance"},
	} {
		_, err, _ := rs.run(t, 10*time.Second, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("gantry %s: %v; want it to say %q", strings.Join(tc.args, " "), err, tc.says)
		}
	}
}
