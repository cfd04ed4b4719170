package apiserver_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/apiserver"
	"github.com/gantry-dev/gantry/internal/apiserver/apiservertest"
	"github.com/gantry-dev/gantry/internal/store"
)

// A dry run goes through every check a write does, answers as the write
// would, and stores nothing.
func TestDryRun(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	c := ts.client(t, ts.Token)
	ctx := context.Background()
	if _, err := c.Apply(ctx, newApp("hello", "hello:v1")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Apply(ctx, &v1.Secret{TypeMeta: v1.TypeMeta{Kind: "Secret"}, Metadata: v1.ObjectMeta{Name: "db", Namespace: "default"}, StringData: map[string]string{"password": "one"}}); err != nil {
		t.Fatal(err)
	}
	if code, body := raw(t, ts, "POST", "/api/v1/namespaces/default/apps", "application/yaml",
		[]byte("kind: App\nmetadata: {name: owner}\nspec: {image: o, ports: [{port: 80}], routes: [{host: shop.example.com}]}\n")); code != 201 {
		t.Fatalf("create owner: %d %s", code, body)
	}
	before := snapshot(t, ts)

	const apps = "/api/v1/namespaces/default/apps"
	for _, tc := range []struct {
		name, method, path, body string
		code                     int
		says                     string
	}{
		{"a create", "POST", apps + "?dryRun=true", `{"kind":"App","metadata":{"name":"new"},"spec":{"image":"new:v1"}}`, 201, `"revision":1`},
		{"Kubernetes' spelling", "POST", apps + "?dryRun=All", `{"kind":"App","metadata":{"name":"new"},"spec":{"image":"new:v1"}}`, 201, `"name":"new"`},
		{"an apply that makes a revision", "PUT", apps + "/hello?apply=true&dryRun=true", `{"kind":"App","metadata":{"name":"hello"},"spec":{"image":"hello:v2","replicas":2,"ports":[{"port":8080}]}}`, 200, `"revision":2`},
		{"an apply that creates", "PUT", apps + "/fresh?apply=true&dryRun=true", `{"kind":"App","metadata":{"name":"fresh"},"spec":{"image":"f"}}`, 201, `"name":"fresh"`},
		{"a create of an existing name", "POST", apps + "?dryRun=true", `{"kind":"App","metadata":{"name":"hello"},"spec":{"image":"x"}}`, 409, "already exists"},
		{"an invalid app", "POST", apps + "?dryRun=true", `{"kind":"App","metadata":{"name":"bad"},"spec":{"image":"","replicas":-1}}`, 400, "spec.replicas"},
		{"a route another app owns", "PUT", apps + "/thief?apply=true&dryRun=true", `{"kind":"App","metadata":{"name":"thief"},"spec":{"image":"t","ports":[{"port":80}],"routes":[{"host":"shop.example.com"}]}}`, 409, "already routed to app default/owner"},
		{"a secret's new value", "PUT", "/api/v1/namespaces/default/secrets/db?apply=true&dryRun=true", `{"kind":"Secret","metadata":{"name":"db"},"stringData":{"password":"two"}}`, 200, `"keys":["password"]`},
		{"another object kind", "POST", "/api/v1/namespaces?dryRun=true", `{"kind":"Namespace","metadata":{"name":"dry"}}`, 201, `"name":"dry"`},
		{"a token", "POST", "/api/v1/tokens?dryRun=true", `{"kind":"Token","spec":{"user":"x"}}`, 400, "not supported for tokens"},
		{"a join token", "POST", "/api/v1/jointokens?dryRun=true", `{"kind":"JoinToken"}`, 400, "not supported for jointokens"},
		{"a user's event is refused as any event write of theirs", "POST", "/api/v1/namespaces/default/events?dryRun=true", `{"kind":"Event","metadata":{"name":"x.1.a"},"type":"Normal","reason":"R","message":"m","object":{"kind":"App","name":"a"}}`, 422, "written by Gantry"},
		{"a delete", "DELETE", apps + "/hello?dryRun=true", "", 400, "dryRun works on create"},
		{"a subresource", "POST", apps + "/hello/scale?dryRun=true", `{"replicas":5}`, 400, "dryRun works on create"},
		{"a bad value", "POST", apps + "?dryRun=yes", `{"kind":"App","metadata":{"name":"x"},"spec":{"image":"x"}}`, 400, "use dryRun=true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := raw(t, ts, tc.method, tc.path, "application/json", []byte(tc.body))
			if code != tc.code || !strings.Contains(body, tc.says) {
				t.Errorf("%s %s = %d %s; want %d containing %q", tc.method, tc.path, code, trunc(body), tc.code, tc.says)
			}
			if strings.Contains(body, `"two"`) || strings.Contains(body, `"one"`) {
				t.Errorf("the answer shows a secret value: %s", trunc(body))
			}
		})
	}
	if after := snapshot(t, ts); after != before {
		t.Errorf("dry runs changed the store:\nbefore %s\nafter  %s", before, after)
	}
	// The apply it previewed, done for real, does what the dry run said.
	a := newApp("hello", "hello:v2")
	if res, err := c.Apply(ctx, a); err != nil || res != "configured" || a.Status.Revision != 2 {
		t.Errorf("the real apply: %q revision %d, %v; want configured at revision 2", res, a.Status.Revision, err)
	}
}

// A dry run refused by quota records no QuotaDenied event; the same apply
// made for real does.
func TestDryRunQuotaMakesNoEvent(t *testing.T) {
	rec := &eventLog{}
	ts := &testServer{apiservertest.Start(t, t.TempDir(), "127.0.0.1:0", apiserver.WithEvents(rec))}
	c := ts.client(t, ts.Token)
	ctx := context.Background()
	limitMemory(t, ts, 128<<20)
	big := rolloutApp(t, "big", "image: big:v1\nresources: {memory: 512Mi}")
	if _, err := c.ApplyDryRun(ctx, big); !errors.Is(err, v1.ErrQuotaExceeded) {
		t.Fatalf("dry run above maxMemory: %v; want quota exceeded", err)
	}
	if got := rec.reasons(); len(got) != 0 {
		t.Errorf("events after a dry run: %v", got)
	}
	if _, err := c.Apply(ctx, big); !errors.Is(err, v1.ErrQuotaExceeded) {
		t.Fatalf("apply above maxMemory: %v; want quota exceeded", err)
	}
	if got := rec.reasons(); !slices.Equal(got, []string{"QuotaDenied"}) {
		t.Errorf("events after the real apply: %v; want [QuotaDenied]", got)
	}
}

// eventLog is an apiserver.EventRecorder that keeps the reasons it hears.
type eventLog struct {
	mu  sync.Mutex
	got []string
}

func (l *eventLog) Record(_ context.Context, _ string, _ v1.ObjectRef, _, reason, _ string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, reason)
}

func (l *eventLog) reasons() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.got)
}

// snapshot lists every object in the store with its store revision.
func snapshot(t *testing.T, ts *testServer) string {
	t.Helper()
	var b strings.Builder
	for _, k := range v1.Kinds() {
		objs, _, err := ts.Store.List(context.Background(), k, store.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			m := o.GetMeta()
			b.WriteString(k.Kind + ":" + m.Key() + "@" + strconv.FormatInt(m.Revision, 10) + " ")
		}
	}
	return b.String()
}

// A dry run of a create answers as the create would even for a name that
// exists: admission first, so a manifest the namespace refuses says why,
// not merely that the name is taken.
func TestDryRunCreateAnswersAsTheCreate(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	c := ts.client(t, ts.Token)
	ctx := context.Background()
	if _, err := c.Apply(ctx, newApp("hello", "hello:v1")); err != nil {
		t.Fatal(err)
	}
	limitMemory(t, ts, 128<<20)
	const apps = "/api/v1/namespaces/default/apps"
	for _, body := range []string{
		`{"kind":"App","metadata":{"name":"hello"},"spec":{"image":"x"}}`,
		`{"kind":"App","metadata":{"name":"hello"},"spec":{"image":"x","resources":{"memory":"512Mi"}}}`,
		`{"kind":"Secret","metadata":{"name":"hello"},"stringData":{"a":"b"}}`,
	} {
		if _, err := c.Apply(ctx, &v1.Secret{TypeMeta: v1.TypeMeta{Kind: "Secret"}, Metadata: v1.ObjectMeta{Name: "hello", Namespace: "default"}, StringData: map[string]string{"a": "b"}}); err != nil {
			t.Fatal(err)
		}
		path := apps
		if strings.Contains(body, "Secret") {
			path = "/api/v1/namespaces/default/secrets"
		}
		dryCode, dryBody := raw(t, ts, "POST", path+"?dryRun=true", "application/json", []byte(body))
		code, realBody := raw(t, ts, "POST", path, "application/json", []byte(body))
		if dryCode != code || dryBody != realBody {
			t.Errorf("POST %s:\ndry run %d %s\nreal    %d %s", body, dryCode, trunc(dryBody), code, trunc(realBody))
		}
	}
}
