package apiserver_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
	"github.com/gantry-dev/gantry/internal/apiserver"
	"github.com/gantry-dev/gantry/internal/apiserver/apiservertest"
	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/store"
)

func rolloutApp(t *testing.T, name, extra string) *v1.App {
	t.Helper()
	o, err := v1.DecodeManifest([]byte(fmt.Sprintf("kind: App\nname: %s\nreplicas: 1\nports: [{port: 8080}]\n%s", name, extra)))
	if err != nil {
		t.Fatal(err)
	}
	return o.(*v1.App)
}

// withRevisions starts a server and applies app name once per extra
// (manifest lines besides kind and name): revision i+1 is extras[i].
func withRevisions(t *testing.T, name string, extras ...string) (*testServer, *client.Client) {
	t.Helper()
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	c := ts.client(t, ts.Token)
	for _, extra := range extras {
		if _, err := c.Apply(context.Background(), rolloutApp(t, name, extra)); err != nil {
			t.Fatal(err)
		}
	}
	return ts, c
}

// The rollback, pause, resume and restart subresources change the App;
// a GET (authorized as the read verb "get") or a DELETE must not.
func TestAppSubresourcesRefuseReadMethods(t *testing.T) {
	ts, c := withRevisions(t, "hello", "image: hello:v1", "image: hello:v2")
	ctx := context.Background()
	for _, tc := range []struct{ method, sub string }{
		{"GET", "pause"},
		{"GET", "resume"},
		{"GET", "restart"},
		{"GET", "rollback"},
		{"DELETE", "restart"},
	} {
		before, _ := client.Get[*v1.App](ctx, c, "default", "hello")
		code, body := raw(t, ts, tc.method, "/api/v1/namespaces/default/apps/hello/"+tc.sub, "", nil)
		after, _ := client.Get[*v1.App](ctx, c, "default", "hello")
		if code != 405 {
			t.Errorf("%s apps/hello/%s = %d %s; want 405 (revision %d -> %d, paused %v -> %v)", tc.method, tc.sub, code, trunc(body),
				before.Status.Revision, after.Status.Revision, before.Spec.Paused, after.Spec.Paused)
		}
	}
}

// A user's rollout undo must pass the same admission as apply: here the
// namespace's per-container memory maximum was lowered after revision 1.
func TestARollbackIsAdmitted(t *testing.T) {
	ts, c := withRevisions(t, "big", "image: big:v1\nresources: {memory: 512Mi}", "image: big:v2\nresources: {memory: 64Mi}")
	ctx := context.Background()
	limitMemory(t, ts, 128<<20)
	// Sanity: apply of the old template is refused now.
	if _, err := c.Apply(ctx, rolloutApp(t, "big", "image: big:v1\nresources: {memory: 512Mi}")); !errors.Is(err, v1.ErrQuotaExceeded) {
		t.Fatalf("apply above maxMemory: %v; want quota exceeded", err)
	}
	a, err := c.Rollback(ctx, "default", "big", 1)
	if err == nil {
		t.Fatalf("rollout undo to a template above the namespace maximum was admitted: now revision %d with memory %s", a.Status.Revision, a.Spec.Resources.Memory)
	}
}

// An explicit --to-revision whose template is the one already running
// must not answer 200 "rolled back" while writing nothing.
func TestARollbackToTheRunningTemplateIsRefused(t *testing.T) {
	_, c := withRevisions(t, "hello", "image: hello:v1", "image: hello:v2")
	ctx := context.Background()
	if _, err := c.Rollback(ctx, "default", "hello", 1); err != nil { // revision 3 = template of 1
		t.Fatal(err)
	}
	a, err := c.Rollback(ctx, "default", "hello", 1)
	if err == nil {
		t.Fatalf("undo --to-revision 1 while revision 3 already runs its template: 200, app at revision %d (nothing written)", a.Status.Revision)
	}
}

// Undo and restart of a paused rollout are refused, as kubectl does: the
// controller would not roll the revision they make out.
func TestUndoAndRestartOfAPausedAppAreRefused(t *testing.T) {
	_, c := withRevisions(t, "hello", "image: hello:v1", "image: hello:v2")
	ctx := context.Background()
	if _, err := c.Pause(ctx, "default", "hello", true); err != nil {
		t.Fatal(err)
	}
	var errs []string
	if a, err := c.Restart(ctx, "default", "hello"); err == nil {
		errs = append(errs, fmt.Sprintf("restart of a paused app accepted (revision %d, paused %v)", a.Status.Revision, a.Spec.Paused))
	}
	if a, err := c.Rollback(ctx, "default", "hello", 0); err == nil {
		errs = append(errs, fmt.Sprintf("undo of a paused app accepted (revision %d, paused %v)", a.Status.Revision, a.Spec.Paused))
	}
	if len(errs) > 0 {
		t.Fatal(strings.Join(errs, "; "))
	}
}

// rollout restart stores its nonce in the template; re-applying the
// unchanged manifest (what a GitOps sync does) keeps it and rolls nothing.
func TestReapplyAfterARestartDoesNotRollAgain(t *testing.T) {
	_, c := withRevisions(t, "hello", "image: hello:v1")
	ctx := context.Background()
	if _, err := c.Restart(ctx, "default", "hello"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Apply(ctx, rolloutApp(t, "hello", "image: hello:v1")); err != nil {
		t.Fatal(err)
	}
	a, _ := client.Get[*v1.App](ctx, c, "default", "hello")
	if a.Status.Revision != 2 {
		t.Fatalf("re-applying the same manifest after a restart made revision %d (another rolling restart)", a.Status.Revision)
	}
}

// Applying an edited manifest keeps what commands changed and the
// manifest does not say, as `kubectl apply` does: the replica count set
// by `gantry scale` and a pause set by `gantry rollout pause`.
func TestApplyKeepsAScaleAndAPause(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	c, warnings := warningClient(t, ts)
	ctx := context.Background()
	manifest := func(extra string) *v1.App {
		o, err := v1.DecodeManifest([]byte("kind: App\nname: web\nports: [{port: 8080}]\n" + extra))
		if err != nil {
			t.Fatal(err)
		}
		return o.(*v1.App)
	}
	if _, err := c.Apply(ctx, manifest("image: web:v1")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Scale(ctx, "default", "web", 4); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Pause(ctx, "default", "web", true); err != nil {
		t.Fatal(err)
	}
	apply := func(extra string) *v1.App {
		t.Helper()
		if _, err := c.Apply(ctx, manifest(extra)); err != nil {
			t.Fatal(err)
		}
		a, err := client.Get[*v1.App](ctx, c, "default", "web")
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	*warnings = nil
	a := apply("image: web:v2")
	if a.Spec.Replicas == nil || *a.Spec.Replicas != 4 || !a.Spec.Paused {
		t.Fatalf("after applying a manifest without replicas or paused: replicas %v, paused %v; want 4 and still paused", a.Spec.Replicas, a.Spec.Paused)
	}
	if w := strings.Join(*warnings, "\n"); !strings.Contains(w, "app/web keeps replicas 4") || !strings.Contains(w, "app/web stays paused") {
		t.Errorf("warnings %q; want both kept fields named", *warnings)
	}
	// What the manifest says wins; only resume unpauses.
	a = apply("image: web:v2\nreplicas: 2")
	if *a.Spec.Replicas != 2 || !a.Spec.Paused {
		t.Fatalf("after applying replicas: 2: replicas %d, paused %v; want 2, still paused", *a.Spec.Replicas, a.Spec.Paused)
	}
	if _, err := c.Pause(ctx, "default", "web", false); err != nil {
		t.Fatal(err)
	}
	a = apply("image: web:v3\npaused: true")
	if !a.Spec.Paused {
		t.Fatal("paused: true in the manifest did not pause")
	}
}

// A route with tls on a server whose load balancer serves no HTTPS is
// accepted with a warning that says so: it would be plain HTTP only.
func TestATLSRouteWithoutHTTPSIsWarnedAbout(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	c, warnings := warningClient(t, ts)
	for _, route := range []string{"{host: plain.example.com}", "{host: shop.example.com, path: /cart, tls: auto}"} {
		*warnings = nil
		o, err := v1.DecodeManifest([]byte("kind: App\nname: web\nimage: web:v1\nports: [{name: http, port: 8080}]\nroutes: [" + route + "]\n"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Apply(context.Background(), o); err != nil {
			t.Fatal(err)
		}
		tls := strings.Contains(route, "tls")
		if got := strings.Join(*warnings, "\n"); tls != strings.Contains(got, "route shop.example.com/cart has tls, but the load balancer serves no HTTPS") {
			t.Errorf("route %s: warnings %q", route, *warnings)
		}
	}
}

// With HTTPS served, a route whose Secret is missing or holds no
// certificate is accepted with a warning: plain HTTP to it is redirected
// to HTTPS, whose handshake would fail. The warning comes again when the
// apply changes nothing, as long as the Secret is still missing.
func TestATLSRouteWithoutItsCertificateIsWarnedAbout(t *testing.T) {
	ts := &testServer{apiservertest.StartConfig(t, t.TempDir(), "127.0.0.1:0", apiserver.Config{AppsDomain: "localhost", IngressHTTPS: true})}
	c, warnings := warningClient(t, ts)
	ctx := context.Background()
	apply := func(route string) string {
		t.Helper()
		*warnings = nil
		o, err := v1.DecodeManifest([]byte("kind: App\nname: web\nimage: web:v1\nports: [{name: http, port: 8080}]\nroutes: [" + route + "]\n"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Apply(ctx, o); err != nil {
			t.Fatal(err)
		}
		return strings.Join(*warnings, "\n")
	}
	secret := func(keys ...string) {
		t.Helper()
		data := map[string]string{}
		for _, k := range keys {
			data[k] = "x"
		}
		if _, err := c.Apply(ctx, &v1.Secret{TypeMeta: v1.TypeMeta{Kind: "Secret"}, Metadata: v1.ObjectMeta{Name: "shop-cert", Namespace: "default"}, StringData: data}); err != nil {
			t.Fatal(err)
		}
	}
	route := "{host: shop.example.com, tls: shop-cert}"
	for _, step := range []struct {
		name  string
		setup func()
		says  string // "" for no warning
	}{
		{"a missing secret", func() {}, `there is no secret "shop-cert" in namespace default`},
		{"still missing on an unchanged apply", func() {}, `there is no secret "shop-cert" in namespace default`},
		{"a secret without tls.crt and tls.key", func() { secret("foo") }, "that secret has no tls.crt and tls.key (it has foo)"},
		{"a secret with both", func() { secret("tls.crt", "tls.key") }, ""},
	} {
		t.Run(step.name, func(t *testing.T) {
			step.setup()
			got := apply(route)
			if step.says == "" && got != "" || !strings.Contains(got, step.says) {
				t.Errorf("warnings %q, want %q", got, step.says)
			}
		})
	}
	if got := apply("{host: dev.example.com, tls: auto}"); got != "" {
		t.Errorf("tls: auto earned warnings %q", got)
	}
}

// Whether a Secret exists, and which keys it has, is for those who may
// read it: a user who may write Apps but not read Secrets gets no warning
// about a route's Secret.
func TestTLSRouteWarningsNeedSecretReadAccess(t *testing.T) {
	ts := &testServer{apiservertest.StartConfig(t, t.TempDir(), "127.0.0.1:0", apiserver.Config{AppsDomain: "localhost", IngressHTTPS: true})}
	ctx := context.Background()
	admin := ts.client(t, ts.Token)
	for _, m := range []string{
		"kind: User\nname: writer\n",
		"kind: Role\nname: app-writer\nrules: [{verbs: ['*'], resources: [apps]}]\n",
		"kind: RoleBinding\nname: writer\nuser: writer\nrole: app-writer\nnamespace: default\n",
	} {
		o, err := v1.DecodeManifest([]byte(m))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := admin.Apply(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	_, tok, err := auth.CreateToken(ctx, ts.Store, v1.TokenSpec{User: "writer"})
	if err != nil {
		t.Fatal(err)
	}
	var warnings []string
	c, err := client.New(client.Config{Server: ts.URL, Token: tok, Warnings: func(w string) { warnings = append(warnings, w) }})
	if err != nil {
		t.Fatal(err)
	}
	o, err := v1.DecodeManifest([]byte("kind: App\nname: web\nimage: web:v1\nports: [{name: http, port: 8080}]\nroutes: [{host: shop.example.com, tls: shop-cert}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Apply(ctx, o); err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 {
		t.Errorf("a user who cannot read secrets was told %q", warnings)
	}
}

// warningClient is an admin client of ts that keeps the warnings the
// server sends.
func warningClient(t *testing.T, ts *testServer) (*client.Client, *[]string) {
	t.Helper()
	warnings := new([]string)
	c, err := client.New(client.Config{Server: ts.URL, Token: ts.Token, Warnings: func(w string) { *warnings = append(*warnings, w) }})
	if err != nil {
		t.Fatal(err)
	}
	return c, warnings
}

// limitMemory sets the default namespace's per-container memory maximum.
func limitMemory(t *testing.T, ts *testServer, max v1.Bytes) {
	t.Helper()
	if _, err := store.Mutate(context.Background(), ts.Store, "", "default", func(n *v1.Namespace) error {
		n.Spec.Limits = &v1.LimitDefaults{MaxMemory: max}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
