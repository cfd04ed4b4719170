package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
	"github.com/gantry-dev/gantry/internal/agent"
	"github.com/gantry-dev/gantry/internal/apiserver"
	"github.com/gantry-dev/gantry/internal/apiserver/apiservertest"
	"github.com/gantry-dev/gantry/internal/logfile"
	"github.com/gantry-dev/gantry/internal/store"
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
	rs := &rolloutServer{url: srv.URL, token: srv.Token, st: srv.Store, logPath: a.LogPath}
	return rs
}

// checkInstancesOften makes followers look at their instance every 100ms
// (instead of 2s) for the rest of the test.
func checkInstancesOften(t *testing.T) {
	saved := instanceCheck
	instanceCheck = 100 * time.Millisecond
	t.Cleanup(func() { instanceCheck = saved })
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
	rs := startLogsCluster(t)
	checkInstancesOften(t)
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

// A follow of an instance that has finished (Succeeded, or Failed for
// good) ends after its last lines, as docker logs -f and kubectl logs -f
// end with their container; it once went on until the instance was
// deleted (review helper-162).
func TestLogsFollowEndsWhenTheInstanceFinishes(t *testing.T) {
	rs := startLogsCluster(t)
	checkInstancesOften(t)
	go func() {
		time.Sleep(time.Second)
		w, err := logfile.Create(rs.logPath("default", "web-1"), logfile.Options{})
		if err != nil {
			t.Error(err)
			return
		}
		w.Write(logfile.Entry{Time: time.Now(), Stream: logfile.Stdout, Line: "last words"})
		w.Close()
		if _, err := store.Mutate(context.Background(), rs.st, "default", "web-1", func(i *v1.Instance) error {
			i.Status.Phase = v1.PhaseSucceeded
			return nil
		}); err != nil {
			t.Error(err)
		}
	}()
	out, err, took := rs.run(t, 8*time.Second, "logs", "-f", "web-1")
	if err != nil || took > 5*time.Second {
		t.Fatalf("logs -f of an instance that succeeded after 1s: ended after %v with %v (output %q); want it to end soon after", took.Round(time.Millisecond), err, out)
	}
	if !strings.Contains(out, "three") || !strings.Contains(out, "last words") {
		t.Errorf("logs -f printed %q; want every line, the last one written as it finished included", out)
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

// logs app/NAME printed nothing when one instance could not answer (not
// placed yet, or deleted since the list): the others' lines print, and
// that one is said to be left out.
func TestAppLogsLeaveOutAnInstanceNotPlaced(t *testing.T) {
	rs := startLogsCluster(t)
	inst := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: "web-2", Namespace: "default", Labels: map[string]string{v1.LabelApp: "web"}},
		Spec: v1.InstanceSpec{App: "web", Revision: 1, Image: "web:v1"}}
	if err := rs.st.Create(context.Background(), inst); err != nil {
		t.Fatal(err)
	}
	out, err, _ := rs.run(t, 10*time.Second, "logs", "app/web")
	if err != nil || !strings.Contains(out, "one\n") || !strings.Contains(out, "three\n") || !strings.Contains(out, "web-2") || !strings.Contains(out, "left out") {
		t.Fatalf("logs app/web with an instance not placed: %v\n%s", err, out)
	}
}

// logs app/NAME exited 0 when none of its instances could be read (all
// not placed yet), where naming one of them exits 1 (review helper-166).
func TestAppLogsFailWhenNoInstanceCouldBeRead(t *testing.T) {
	rs := startLogsCluster(t)
	k, _ := v1.LookupKind("Instance")
	if _, err := rs.st.Delete(context.Background(), k, "default", "web-1", 0); err != nil {
		t.Fatal(err)
	}
	inst := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: "web-2", Namespace: "default", Labels: map[string]string{v1.LabelApp: "web"}},
		Spec: v1.InstanceSpec{App: "web", Revision: 1, Image: "web:v1"}}
	if err := rs.st.Create(context.Background(), inst); err != nil {
		t.Fatal(err)
	}
	out, err, _ := rs.run(t, 10*time.Second, "logs", "app/web")
	if err == nil || !strings.Contains(out+err.Error(), "left out") {
		t.Fatalf("logs app/web with its only instance not placed: %v\n%s; want an error", err, out)
	}
}

// logs -f app/NAME followed the instances there when it started, and
// ended (exit 0) once they were deleted, in a rollout say, printing
// nothing of the new ones. It follows instances made later from their
// first line, and ends when the App is deleted.
func TestAppLogsFollowTakesInNewInstances(t *testing.T) {
	rs := followCluster(t, "web")
	ctx := context.Background()
	go func() {
		time.Sleep(time.Second)
		placeWithLine(t, rs, "web", "web-2", "from the new one", 2)
		k, _ := v1.LookupKind("Instance")
		if _, err := rs.st.Delete(ctx, k, "default", "web-1", 0); err != nil {
			t.Error(err)
		}
		// Long enough for a loaded machine to find web-2 (polled every
		// 100 ms) and read its line.
		time.Sleep(3 * time.Second)
		if _, err := rs.st.Delete(ctx, k, "default", "web-2", 0); err != nil {
			t.Error(err)
		}
		ak, _ := v1.LookupKind("App")
		if _, err := rs.st.Delete(ctx, ak, "default", "web", 0); err != nil {
			t.Error(err)
		}
	}()
	out, err, took := rs.run(t, 15*time.Second, "logs", "-f", "app/web")
	if err != nil || took > 10*time.Second {
		t.Fatalf("logs -f app/web: ended after %v with %v; want it to end soon after the App is deleted\n%s", took.Round(time.Millisecond), err, out)
	}
	for _, want := range []string{"[web-1] one", "[web-2] from the new one"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// --since and --tail 0 -f are sent as seconds back from now, which the
// node counts on its own clock: lines are chosen by the clock that
// stamped them, not by this machine's.
func TestLogsSinceIsCountedOnTheNodesClock(t *testing.T) {
	rs := startLogsCluster(t)
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/logs") {
			asked = append(asked, r.URL.RawQuery)
		}
		proxy := httputil.NewSingleHostReverseProxy(mustURL(t, rs.url))
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	via := &rolloutServer{url: srv.URL, token: rs.token}
	out, err, _ := via.run(t, 10*time.Second, "logs", "web-1", "--since", "90s")
	if err != nil || !strings.Contains(out, "one") {
		t.Fatalf("logs --since 90s: %v\n%s", err, out)
	}
	if len(asked) != 1 || asked[0] != "sinceSeconds=90" {
		t.Errorf("asked %q; want sinceSeconds=90", asked)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// logs -f app/NAME by a user who may list instances but not read their
// logs waited silently until Ctrl-C: each follow's 403 was kept until the
// App went. The first such error ends the command.
func TestAppLogsFollowEndsOnAForbiddenLog(t *testing.T) {
	rs := startLogsCluster(t)
	ctx := context.Background()
	admin, err := client.New(client.Config{Server: rs.url, Token: rs.token})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{
		"kind: App\nname: web\nimage: web:v1\n",
		"kind: Role\nname: lister\nrules: [{verbs: [get, list, watch], resources: [apps, instances]}]\n",
		"kind: User\nname: lee\n",
		"kind: RoleBinding\nname: lee-lister\nuser: lee\nrole: lister\nnamespace: default\n",
	} {
		o, err := v1.DecodeManifest([]byte(m))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := admin.Apply(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := admin.CreateToken(ctx, v1.TokenSpec{User: "lee"})
	if err != nil {
		t.Fatal(err)
	}
	lee := &rolloutServer{url: rs.url, token: tok.Secret}
	_, err, took := lee.run(t, 15*time.Second, "logs", "-f", "app/web")
	if !errors.Is(err, v1.ErrForbidden) || took > 10*time.Second {
		t.Fatalf("logs -f app/web without the right to read logs: %v after %v; want forbidden at once", err, took.Round(time.Millisecond))
	}
}

// logs -f app/NAME right after an apply (no instance made yet) or of an
// App scaled to 0 failed at once with "has no instances"; it waits for
// the instances and follows them, as it does those made later. Without
// -f, an App with none is still an error.
func TestAppLogsFollowWaitsForTheFirstInstance(t *testing.T) {
	rs := followCluster(t, "api")
	ctx := context.Background()
	if _, err, _ := rs.run(t, 10*time.Second, "logs", "app/api"); err == nil || !strings.Contains(err.Error(), "has no instances") {
		t.Fatalf("logs app/api without instances: %v, want has no instances", err)
	}
	go func() {
		time.Sleep(500 * time.Millisecond)
		placeWithLine(t, rs, "api", "api-1", "first words", 1)
		// Deleted as the App's delete would (no controller runs here).
		time.Sleep(3 * time.Second)
		k, _ := v1.LookupKind("Instance")
		if _, err := rs.st.Delete(ctx, k, "default", "api-1", 0); err != nil {
			t.Error(err)
		}
		ak, _ := v1.LookupKind("App")
		if _, err := rs.st.Delete(ctx, ak, "default", "api", 0); err != nil {
			t.Error(err)
		}
	}()
	out, err, took := rs.run(t, 15*time.Second, "logs", "-f", "app/api")
	if err != nil || took > 10*time.Second {
		t.Fatalf("logs -f app/api: ended after %v with %v; want it to wait for the instance and end when the App is deleted\n%s", took.Round(time.Millisecond), err, out)
	}
	if !strings.Contains(out, "[api-1] first words") {
		t.Errorf("output lacks the new instance's line:\n%s", out)
	}
	if _, err, _ := rs.run(t, 10*time.Second, "logs", "-f", "app/nope"); err == nil || !errors.Is(err, v1.ErrNotFound) && !strings.Contains(err.Error(), "not found") {
		t.Errorf("logs -f of a missing App: %v, want not found", err)
	}
}

// followCluster is startLogsCluster with instance checks every 100 ms
// and App app applied (no instance of it made: no controller runs).
func followCluster(t *testing.T, app string) *rolloutServer {
	t.Helper()
	rs := startLogsCluster(t)
	checkInstancesOften(t)
	c, err := client.New(client.Config{Server: rs.url, Token: rs.token})
	if err != nil {
		t.Fatal(err)
	}
	o, _ := v1.DecodeManifest([]byte("kind: App\nname: " + app + "\nimage: " + app + ":v1\n"))
	if _, err := c.Apply(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	return rs
}

// placeWithLine makes instance name of app on n1 whose log holds line,
// as an agent running it would.
func placeWithLine(t *testing.T, rs *rolloutServer, app, name, line string, rev int64) {
	w, err := logfile.Create(rs.logPath("default", name), logfile.Options{})
	if err != nil {
		t.Error(err)
		return
	}
	w.Write(logfile.Entry{Time: time.Now(), Stream: logfile.Stdout, Line: line})
	w.Close()
	inst := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{v1.LabelApp: app}},
		Spec: v1.InstanceSpec{App: app, Revision: rev, Image: app + ":v1", Node: "n1"}}
	if err := rs.st.Create(context.Background(), inst); err != nil {
		t.Error(err)
	}
}
