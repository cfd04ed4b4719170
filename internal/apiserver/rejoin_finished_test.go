package apiserver_test

import (
	"context"
	"net/http"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/store"
)

// A join under a dead node's name deleted its finished instances too, so
// their App made new ones and finished work (a migration) ran again; the
// eviction of a dead node keeps them. They stay now.
func TestRejoinKeepsFinishedInstances(t *testing.T) {
	srv, _, joinTok := startJoinServer(t)
	ctx := context.Background()
	n := &v1.Node{TypeMeta: v1.TypeMeta{Kind: "Node"}, Metadata: v1.ObjectMeta{Name: "worker-1"}}
	if err := srv.Store.Create(ctx, n); err != nil {
		t.Fatal(err)
	}
	code := 0
	done := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: "migrate-abcde", Namespace: "default"},
		Spec:   v1.InstanceSpec{App: "migrate", Revision: 1, Node: "worker-1", Template: v1.Template{Image: "busybox", RestartPolicy: v1.RestartNever}},
		Status: v1.InstanceStatus{Phase: v1.PhaseSucceeded, ExitCode: &code, Node: "worker-1"}}
	running := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: "web-fghij", Namespace: "default"},
		Spec:   v1.InstanceSpec{App: "web", Revision: 1, Node: "worker-1", Template: v1.Template{Image: "web"}},
		Status: v1.InstanceStatus{Phase: v1.PhaseRunning, Node: "worker-1"}}
	for _, i := range []*v1.Instance{done, running} {
		if err := srv.Store.Create(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	resp, _, _ := joinAs(t, srv.URL, joinTok, "worker-1")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("rejoin: HTTP %d", resp.StatusCode)
	}
	if _, err := store.Get[*v1.Instance](ctx, srv.Store, "default", "migrate-abcde"); err != nil {
		t.Errorf("the rejoin deleted the dead node's Succeeded instance (its App would run the job again): %v", err)
	}
	if _, err := store.Get[*v1.Instance](ctx, srv.Store, "default", "web-fghij"); err == nil {
		t.Error("the rejoin kept the dead node's running instance (its secrets would reach the machine that joined)")
	}
}

// A node reads the secrets of the instances bound to it; not those of a
// finished one, which never runs again (kept through a join under a dead
// node's name, it would hand them to the machine that joined).
func TestANodeRevealsNoSecretOfAFinishedInstance(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	ctx := context.Background()
	admin := ts.client(t, ts.Token)
	for _, name := range []string{"live", "old"} {
		s := &v1.Secret{TypeMeta: v1.TypeMeta{Kind: "Secret"}, Metadata: v1.ObjectMeta{Name: name, Namespace: "default"}, StringData: map[string]string{"k": "v"}}
		if err := admin.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	uses := func(name, secret string, phase string) *v1.Instance {
		return &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: name, Namespace: "default"},
			Spec: v1.InstanceSpec{App: name, Revision: 1, Node: "n1", Template: v1.Template{Image: "x",
				Env: []v1.EnvVar{{Name: "K", Secret: &v1.SecretRef{Name: secret, Key: "k"}}}}},
			Status: v1.InstanceStatus{Phase: phase}}
	}
	for _, i := range []*v1.Instance{uses("runs", "live", v1.PhaseRunning), uses("ran", "old", v1.PhaseSucceeded)} {
		if err := ts.Store.Create(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	_, nodeTok, err := auth.CreateToken(ctx, ts.Store, v1.TokenSpec{Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	if code, body := rawAs(t, ts, nodeTok, http.MethodGet, "/api/v1/namespaces/default/secrets/live/reveal", "", nil); code != http.StatusOK {
		t.Errorf("n1 reveals the secret of its running instance: %d %s, want 200", code, trunc(body))
	}
	if code, body := rawAs(t, ts, nodeTok, http.MethodGet, "/api/v1/namespaces/default/secrets/old/reveal", "", nil); code != http.StatusForbidden {
		t.Errorf("n1 reveals the secret of its finished instance: %d %s, want 403", code, trunc(body))
	}
}
