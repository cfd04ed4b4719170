package controller

import (
	"context"
	"strings"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// A failing revision renamed the port a route uses; the template of the
// stable revision does not validate with that route. Field errors did
// not count as a refusal, so the automatic rollback was taken for an
// admission that could not decide and tried again at every pass, the App
// Progressing for ever without a word. It is failed, saying why.
func TestAutomaticRollbackRefusedByValidationFailsTheApp(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := storetest.New(t)
	if err := s.Create(ctx, &v1.Namespace{TypeMeta: v1.TypeMeta{Kind: "Namespace"}, Metadata: v1.ObjectMeta{Name: "q"}}); err != nil {
		t.Fatal(err)
	}
	api, apply := serveAPI(ctx, t, s)
	if err := apply("kind: App\nname: a\nnamespace: q\nimage: x:v1\nports: [{port: 8080}]\n"); err != nil {
		t.Fatal(err)
	}
	if err := apply("kind: App\nname: a\nnamespace: q\nimage: x:v2\nports: [{name: web, port: 8080}]\nroutes: [{host: x.example.com, port: web}]\n"); err != nil {
		t.Fatal(err)
	}
	a, err := store.Get[*v1.App](ctx, s, "q", "a")
	if err != nil {
		t.Fatal(err)
	}
	a.Status.StableRevision = 1

	r := NewRollout(s, &eventLog{}, quiet, nil, nil)
	r.HoldQuota = api.HoldQuota
	r.HoldClaims = api.HoldClaims
	r.Admit = api.AdmitRollback
	if err := r.deadlineExceeded(ctx, a, nil, 0, "revision 2 did not become ready"); err != nil {
		t.Fatalf("the refused rollback is retried as an error: %v", err)
	}
	got, err := store.Get[*v1.App](ctx, s, "q", "a")
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase != v1.AppFailed || !strings.Contains(got.Status.Message, "the rollback to revision 1 was refused") ||
		!strings.Contains(got.Status.Message, `no http port named "web"`) {
		t.Fatalf("status %s %q; want Failed, saying the rollback was refused and why", got.Status.Phase, got.Status.Message)
	}
}
