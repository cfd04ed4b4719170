package main

import (
	"context"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
)

// `get app hello -w` once watched every app of the namespace: the name
// was dropped (kubectl get deploy hello -w shows only hello).
func TestGetWatchKeepsToTheNamedObject(t *testing.T) {
	rs := startRolloutServer(t)
	applyRolloutApp(t, rs, "hello", "hello:v1")
	applyRolloutApp(t, rs, "other", "other:v1")
	out, _, _ := rs.run(t, 2*time.Second, "get", "app", "hello", "-w")
	if strings.Contains(out, "other") {
		t.Errorf("get app hello -w printed app other:\n%s", out)
	}
}

// An output format watch cannot give is refused, as without -w (it once
// printed a table).
func TestGetWatchRefusesAnUnknownFormat(t *testing.T) {
	rs := startRolloutServer(t)
	applyRolloutApp(t, rs, "hello", "hello:v1")
	out, err, _ := rs.run(t, 2*time.Second, "get", "apps", "-w", "-o", "bogus")
	if err == nil || !strings.Contains(err.Error(), "unknown output format") {
		t.Errorf("get apps -w -o bogus: %v, printed:\n%s", err, out)
	}
}

// A second KIND/NAME (or a NAME after KIND/NAME) was once dropped without
// a word: exit 0 with only the first object shown. kubectl shows both, or
// refuses "app/hello world"; so does gantry now.
func TestGetAndDescribeDoNotDropASecondObject(t *testing.T) {
	rs := startRolloutServer(t)
	applyRolloutApp(t, rs, "hello", "hello:v1")
	applyRolloutApp(t, rs, "world", "world:v1")
	for _, args := range [][]string{
		{"get", "app/hello", "app/world"},
		{"get", "app/hello", "world"},
		{"describe", "app/hello", "app/world"},
	} {
		out, err, _ := rs.run(t, 10*time.Second, args...)
		if err == nil && !strings.Contains(out, "world") {
			t.Errorf("%s: exit 0 showing only hello:\n%s", strings.Join(args, " "), out)
		}
	}
}

// `gantry get app ""` (a script's variable that came out empty) listed
// every App and exited 0; kubectl refuses an empty name (review
// helper-166).
func TestAnEmptyNameIsRefused(t *testing.T) {
	rs := startRolloutServer(t)
	for _, args := range [][]string{
		{"get", "app", ""},
		{"get", "app/"},
		{"describe", "app", ""},
		{"delete", "app", ""},
	} {
		if out, err, _ := rs.run(t, 5*time.Second, args...); err == nil {
			t.Errorf("%q: exit 0 with %q; want an error about the empty name", args, out)
		}
	}
}

// `get app nosuch -w` waited for ever without a word; kubectl says it is
// not found (review helper-166).
func TestGetWatchOfAMissingObjectIsNotFound(t *testing.T) {
	rs := startRolloutServer(t)
	out, err, took := rs.run(t, 5*time.Second, "get", "app", "nosuch", "-w")
	if err == nil || !strings.Contains(err.Error(), "not found") || took > 3*time.Second {
		t.Errorf("get app nosuch -w: %v after %v\n%s; want not found at once", err, took, out)
	}
}

// `apply hello.yaml` and `apply --dry-run server -f x` said "unknown
// command"; the error says what was meant now (review helper-166).
func TestManifestCommandsSayHowToGiveFiles(t *testing.T) {
	rs := startRolloutServer(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"apply", "hello.yaml"}, "-f hello.yaml"},
		{[]string{"diff", "hello.yaml"}, "-f hello.yaml"},
		{[]string{"apply", "--dry-run", "server", "-f", "x.yaml"}, "--dry-run=server"},
		{[]string{"top"}, "top apps"},
	} {
		out, err, _ := rs.run(t, 5*time.Second, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v (%s); want an error naming %q", tc.args, err, out, tc.want)
		}
	}
}

// A batch App that the controller judged complete with some instances
// done and others at work (done ones are never ready again) kept rollout
// status waiting on "ready" instances (review helper-167).
func TestRolloutStatusOfAPartlyDoneBatchApp(t *testing.T) {
	rs := startRolloutServer(t)
	o, err := v1.DecodeManifest([]byte("kind: App\nname: job\nimage: job:v1\nreplicas: 2\nrestartPolicy: on-failure\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rs.c.Apply(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Mutate(context.Background(), rs.st, "default", "job", func(a *v1.App) error {
		a.Status.Phase, a.Status.StableRevision = v1.AppRunning, a.Status.Revision
		a.Status.Replicas, a.Status.UpdatedReplicas, a.Status.ObservedReplicas, a.Status.ReadyReplicas = 2, 2, 2, 1
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	out, err, _ := rs.run(t, 5*time.Second, "rollout", "status", "app/job")
	if err != nil || !strings.Contains(out, "successfully rolled out") {
		t.Errorf("rollout status of a batch App complete with 1 of 2 done: %v\n%s", err, out)
	}
}
