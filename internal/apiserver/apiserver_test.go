package apiserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
	"github.com/gantry-dev/gantry/internal/apiserver/apiservertest"
	"github.com/gantry-dev/gantry/internal/auth"
)

// testServer is an API server on a real embedded etcd.
type testServer struct{ *apiservertest.Server }

func startServer(t *testing.T, dir, addr string) *testServer {
	t.Helper()
	return &testServer{apiservertest.Start(t, dir, addr)}
}

func (ts *testServer) client(t *testing.T, token string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Server: ts.URL, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newApp(name, image string) *v1.App {
	o, err := v1.DecodeManifest([]byte(fmt.Sprintf("kind: App\nname: %s\nimage: %s\nreplicas: 2\nports: [{port: 8080}]", name, image)))
	if err != nil {
		panic(err)
	}
	return o.(*v1.App)
}

func raw(t *testing.T, ts *testServer, method, path, ctype string, body []byte) (int, string) {
	t.Helper()
	code, b, _ := request(t, ts, ts.Token, method, path, ctype, body)
	return code, b
}

// rawAs is raw with the caller's token; an empty token asks anonymously.
func rawAs(t *testing.T, ts *testServer, token, method, path, ctype string, body []byte) (int, string) {
	t.Helper()
	code, b, _ := request(t, ts, token, method, path, ctype, body)
	return code, b
}

// request sends a request with token (none if empty) and returns the
// answer's status, body and header.
func request(t *testing.T, ts *testServer, token, method, path, ctype string, body []byte) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, ts.URL+path, bytes.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestStatusCodes(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	c := ts.client(t, ts.Token)
	ctx := context.Background()
	if _, err := c.Apply(ctx, newApp("hello", "hello:v1")); err != nil {
		t.Fatal(err)
	}
	big := append([]byte(`{"kind":"App","metadata":{"name":"big"},"spec":{"image":"x","args":["`), bytes.Repeat([]byte("a"), 4<<20)...)
	big = append(big, []byte(`"]}}`)...)
	tests := []struct {
		name   string
		method string
		path   string
		ctype  string
		body   string
		want   int
		says   string
	}{
		{"create returns 201", "POST", "/api/v1/namespaces/default/apps", "application/json", `{"kind":"App","metadata":{"name":"two"},"spec":{"image":"two:v1"}}`, 201, `"name":"two"`},
		{"create of an existing name is 409", "POST", "/api/v1/namespaces/default/apps", "application/json", `{"kind":"App","metadata":{"name":"hello"},"spec":{"image":"x"}}`, 409, "already exists"},
		{"validation errors are 400 with every field", "POST", "/api/v1/namespaces/default/apps", "application/json", `{"kind":"App","metadata":{"name":"Bad"},"spec":{"image":"","ports":[{"port":0}]}}`, 400, `spec.ports[0].port`},
		{"unknown fields are 400", "POST", "/api/v1/namespaces/default/apps", "application/json", `{"kind":"App","metadata":{"name":"x"},"spec":{"imag":"x"}}`, 400, "unknown field"},
		{"wrong types name the field", "POST", "/api/v1/namespaces/default/apps", "application/json", `{"kind":"App","metadata":{"name":"x"},"spec":{"image":"x","replicas":"3"}}`, 400, `"field":"spec.replicas","message":"must be a whole number`},
		{"field names are case-sensitive", "POST", "/api/v1/namespaces/default/apps", "application/json", `{"kind":"App","metadata":{"name":"x"},"spec":{"Image":"x"}}`, 400, `did you mean \"image\"?`},
		{"a key twice is 400", "POST", "/api/v1/namespaces/default/apps", "application/json", `{"kind":"App","metadata":{"name":"x","name":"y"},"spec":{"image":"x"}}`, 400, `"field":"metadata.name","message":"appears twice`},
		{"a body that is no object is 400", "POST", "/api/v1/namespaces/default/apps", "application/json", `[1]`, 400, "must be"},
		{"yaml bodies are accepted", "POST", "/api/v1/namespaces/default/apps", "application/yaml", "kind: App\nmetadata: {name: yml}\nspec: {image: yml}\n", 201, `"name":"yml"`},
		{"a yaml env map keeps its values as written", "POST", "/api/v1/namespaces/default/apps", "application/yaml", "kind: App\nmetadata: {name: env}\nspec: {image: env, env: {PYTHON_VERSION: 3.10}}\n", 201, `"value":"3.10"`},
		{"a second object after the first is 400", "POST", "/api/v1/namespaces/default/apps", "application/json", `{"kind":"App","metadata":{"name":"t1"},"spec":{"image":"x"}} {"metadata":{"name":"t2"}}`, 400, "after the first JSON value"},
		{"text after the object is 400", "POST", "/api/v1/namespaces/default/apps", "application/json", `{"kind":"App","metadata":{"name":"t3"},"spec":{"image":"x"}} garbage`, 400, "after the first JSON value"},
		{"a second yaml document is 400", "POST", "/api/v1/namespaces/default/apps", "application/yaml", "kind: App\nmetadata: {name: t4}\nspec: {image: x}\n---\nkind: App\nmetadata: {name: t5}\nspec: {image: x}\n", 400, "the body is more than one YAML document"},
		{"other content types are 415", "POST", "/api/v1/namespaces/default/apps", "text/plain", `x`, 415, "not supported"},
		{"oversized bodies are 413", "POST", "/api/v1/namespaces/default/apps", "application/json", string(big), 413, "larger than"},
		{"missing objects are 404", "GET", "/api/v1/namespaces/default/apps/nope", "", "", 404, "not found"},
		{"unknown resources are 404", "GET", "/api/v1/namespaces/default/pods", "", "", 404, "unknown resource"},
		{"missing namespaces are 404 with advice", "POST", "/api/v1/namespaces/ghost/apps", "application/json", `{"kind":"App","metadata":{"name":"x"},"spec":{"image":"x"}}`, 404, "gantry create namespace ghost"},
		{"stale updates are 409", "PUT", "/api/v1/namespaces/default/apps/hello", "application/json", `{"kind":"App","metadata":{"name":"hello","revision":1},"spec":{"image":"x"}}`, 409, "was modified"},
		{"updates need a revision", "PUT", "/api/v1/namespaces/default/apps/hello", "application/json", `{"kind":"App","metadata":{"name":"hello"},"spec":{"image":"x"}}`, 400, "metadata.revision is required"},
		{"revisions are immutable: 422", "PUT", "/api/v1/namespaces/default/revisions/hello-1", "application/json", `{"kind":"Revision","metadata":{"name":"hello-1","revision":5}}`, 422, "immutable"},
		{"name in body must match the URL", "PUT", "/api/v1/namespaces/default/apps/hello", "application/json", `{"kind":"App","metadata":{"name":"other","revision":5},"spec":{"image":"x"}}`, 400, "does not match"},
		{"wrong methods are 405", "PATCH", "/api/v1/namespaces/default/apps", "", "", 405, "not allowed"},
		{"a negative revision guard on delete is 400", "DELETE", "/api/v1/namespaces/default/apps/hello?revision=-1", "", "", 400, "give the object's metadata.revision"},
		{"a read subresource answers GET only", "DELETE", "/api/v1/namespaces/default/secrets/s/reveal", "", "", 405, "not allowed"},
		{"logs answer GET only", "POST", "/api/v1/namespaces/default/apps/hello/logs", "", "", 405, "not allowed"},
		{"an App's metrics answer GET only", "DELETE", "/api/v1/namespaces/default/apps/hello/metrics", "", "", 405, "not allowed"},
		{"exec is POST only", "GET", "/api/v1/namespaces/default/instances/i/exec", "", "", 405, "not allowed"},
		{"PATCH of an object is 405, not a replace", "PATCH", "/api/v1/namespaces/default/apps/hello", "application/json", `{"spec":{"replicas":3}}`, 405, "PUT the whole object"},
		{"scale without replicas is 400, not 0", "POST", "/api/v1/namespaces/default/apps/hello/scale", "application/json", `{}`, 400, `"field":"replicas","message":"is required`},
		{"scale to null is 400", "PUT", "/api/v1/namespaces/default/apps/hello/scale", "application/json", `{"replicas":null}`, 400, `"field":"replicas","message":"is required`},
		{"the default namespace cannot be deleted", "DELETE", "/api/v1/namespaces/default", "", "", 422, "cannot be deleted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := raw(t, ts, tt.method, tt.path, tt.ctype, []byte(tt.body))
			if code != tt.want || !strings.Contains(body, tt.says) {
				t.Fatalf("%s %s = %d %s; want %d containing %q", tt.method, tt.path, code, trunc(body), tt.want, tt.says)
			}
			if code >= 400 && !strings.Contains(body, `"code":`) {
				t.Errorf("error body is not a Status: %s", trunc(body))
			}
		})
	}
	t.Run("nothing invalid was stored", func(t *testing.T) {
		apps, _, err := client.List[*v1.App](ctx, c, "default", client.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, a := range apps {
			names = append(names, a.Metadata.Name)
		}
		if strings.Join(names, ",") != "env,hello,two,yml" {
			t.Errorf("stored apps = %v, want env, hello, two, yml", names)
		}
	})
}

// metadata.created is the server's to set, as uid is: a create stamps
// its own time whatever the body says, an update keeps the stored one.
func TestCreationTimeIsTheServers(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	before := time.Now().Add(-time.Minute)
	var got struct {
		Metadata v1.ObjectMeta `json:"metadata"`
	}
	for i, req := range []struct{ method, path, body string }{
		{"POST", "/api/v1/roles", `{"kind":"Role","metadata":{"name":"r1","created":"2001-01-01T00:00:00Z"},"spec":{"rules":[{"verbs":["get"],"resources":["apps"]}]}}`},
		{"PUT", "/api/v1/roles/r1?apply=true", `{"kind":"Role","metadata":{"name":"r1","created":"2001-01-01T00:00:00Z"},"spec":{"rules":[{"verbs":["list"],"resources":["apps"]}]}}`},
	} {
		code, body := raw(t, ts, req.method, req.path, "application/json", []byte(req.body))
		if code >= 300 {
			t.Fatalf("%s %s: %d %s", req.method, req.path, code, trunc(body))
		}
		created := got.Metadata.Created
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatal(err)
		}
		if got.Metadata.Created.Before(before) || i > 0 && !got.Metadata.Created.Equal(created) {
			t.Fatalf("%s %s: created %v, want the server's time of the create", req.method, req.path, got.Metadata.Created)
		}
	}
}

func trunc(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

func TestAuthentication(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	ctx := context.Background()
	for name, tok := range map[string]string{
		"no token":        "",
		"malformed token": "hello",
		"unknown token":   "gtk_aaaaaaaa_" + strings.Repeat("a", 52),
	} {
		t.Run(name+" is 401", func(t *testing.T) {
			_, _, err := ts.client(t, tok).List(ctx, "App", "default", client.ListOptions{})
			if !errors.Is(err, v1.ErrUnauthorized) {
				t.Fatalf("err = %v, want 401", err)
			}
		})
	}
	admin := ts.client(t, ts.Token)
	// The API refuses to create a token that has expired; one that
	// expired since is stored as this one.
	_, expired, err := auth.CreateToken(ctx, ts.Store, v1.TokenSpec{User: auth.AdminUser, Description: "short", Expires: ptr(time.Now().Add(-time.Minute))})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("expired token is 401", func(t *testing.T) {
		_, _, err := ts.client(t, expired).List(ctx, "App", "default", client.ListOptions{})
		if !errors.Is(err, v1.ErrUnauthorized) {
			t.Fatalf("err = %v, want 401", err)
		}
	})
	ok, err := admin.CreateToken(ctx, v1.TokenSpec{Description: "revoke me"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ts.client(t, ok.Secret).List(ctx, "App", "default", client.ListOptions{}); err != nil {
		t.Fatalf("fresh token: %v", err)
	}
	t.Run("revoked token is 401", func(t *testing.T) {
		if _, err := admin.Delete(ctx, "Token", "", ok.Metadata.Name); err != nil {
			t.Fatal(err)
		}
		_, _, err := ts.client(t, ok.Secret).List(ctx, "App", "default", client.ListOptions{})
		if !errors.Is(err, v1.ErrUnauthorized) {
			t.Fatalf("err = %v, want 401", err)
		}
	})
	t.Run("token hashes never leave the server", func(t *testing.T) {
		toks, _, err := client.List[*v1.Token](ctx, admin, "", client.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range toks {
			if tk.Spec.Hash != "" {
				t.Fatalf("token %s listed with its hash", tk.Metadata.Name)
			}
		}
	})
}

func ptr[T any](v T) *T { return &v }

func TestApplyMakesRevisionsOnlyOnTemplateChange(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	c := ts.client(t, ts.Token)
	ctx := context.Background()
	steps := []struct {
		app     *v1.App
		result  string
		wantRev int64
	}{
		{newApp("hello", "hello:v1"), "created", 1},
		{newApp("hello", "hello:v1"), "unchanged", 1},
		{newApp("hello", "hello:v2"), "configured", 2},
		{func() *v1.App { a := newApp("hello", "hello:v2"); n := int32(5); a.Spec.Replicas = &n; return a }(), "configured", 2},
	}
	for i, s := range steps {
		res, err := c.Apply(ctx, s.app)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		got, _ := client.Get[*v1.App](ctx, c, "default", "hello")
		if res != s.result || got.Status.Revision != s.wantRev {
			t.Fatalf("step %d: %s at revision %d, want %s at %d", i, res, got.Status.Revision, s.result, s.wantRev)
		}
	}
	revs, _, _ := client.List[*v1.Revision](ctx, c, "default", client.ListOptions{Selector: v1.LabelApp + "=hello"})
	if len(revs) != 2 {
		t.Fatalf("%d revisions, want 2", len(revs))
	}
	rb, err := c.Rollback(ctx, "default", "hello", 1)
	if err != nil {
		t.Fatal(err)
	}
	if rb.Status.Revision != 3 || rb.Spec.Image != "hello:v1" {
		t.Fatalf("rollback: revision %d image %s, want 3 hello:v1", rb.Status.Revision, rb.Spec.Image)
	}
	if _, err := c.Rollback(ctx, "default", "hello", 9); !errors.Is(err, v1.ErrUnprocessable) {
		t.Fatalf("rollback to a missing revision: %v, want 422", err)
	}
}

// TestConcurrentAPIUpdates proves compare-and-swap through the API: many
// clients update the same App from the same revision; one wins, the rest
// get 409.
func TestConcurrentAPIUpdates(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	c := ts.client(t, ts.Token)
	ctx := context.Background()
	a := newApp("race", "race:v0")
	if _, err := c.Apply(ctx, a); err != nil {
		t.Fatal(err)
	}
	base, err := client.Get[*v1.App](ctx, c, "default", "race")
	if err != nil {
		t.Fatal(err)
	}
	const writers = 24
	var ok, conflict atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := *base
			mine.Spec.Image = fmt.Sprintf("race:w%d", w)
			<-start
			err := c.Update(ctx, &mine)
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, v1.ErrConflict):
				conflict.Add(1)
			default:
				t.Errorf("writer %d: %v", w, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if ok.Load() != 1 || conflict.Load() != writers-1 {
		t.Fatalf("%d updates succeeded, %d conflicted; want 1 and %d", ok.Load(), conflict.Load(), writers-1)
	}
	got, _ := client.Get[*v1.App](ctx, c, "default", "race")
	if got.Status.Revision != 2 {
		t.Fatalf("revision %d after one winning template change, want 2", got.Status.Revision)
	}
}

// TestWatchResumesAcrossServerRestart follows apps with the client's
// resuming watch while the server (and its etcd) restarts, and checks that
// every change arrives exactly once, in order.
func TestWatchResumesAcrossServerRestart(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, dir, "127.0.0.1:0")
	addr := strings.TrimPrefix(ts.URL, "http://")
	c := ts.client(t, ts.Token)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ch := c.Watch(ctx, "App", "default", client.WatchOptions{})
	var want []string
	change := func(c *client.Client, image string) {
		t.Helper()
		a := newApp("w", image)
		if _, err := c.Apply(ctx, a); err != nil {
			t.Fatal(err)
		}
		want = append(want, image)
	}
	change(c, "w:1")
	change(c, "w:2")
	var got []string
	var lastRev int64
	next := func(n int) {
		t.Helper()
		for len(got) < n {
			select {
			case ev, ok := <-ch:
				if !ok {
					t.Fatalf("watch closed after %v", got)
				}
				if ev.Type == "ERROR" {
					t.Fatalf("watch error: %v", ev.Err)
				}
				if ev.Object == nil {
					continue
				}
				a := ev.Object.(*v1.App)
				if ev.Revision <= lastRev {
					t.Fatalf("event at revision %d after %d", ev.Revision, lastRev)
				}
				lastRev = ev.Revision
				// The controller-less server writes status only
				// through apply; every event is an image change.
				if len(got) == 0 || got[len(got)-1] != a.Spec.Image {
					got = append(got, a.Spec.Image)
				}
			case <-ctx.Done():
				t.Fatalf("timed out with %v, want %v", got, want)
			}
		}
	}
	next(2)
	ts.Stop()
	// While the server is down, nobody sees anything; after it returns on
	// the same address and data, the watch resumes by itself.
	ts2 := startServer(t, dir, addr)
	c2 := ts2.client(t, ts.Token)
	change(c2, "w:3")
	change(c2, "w:4")
	next(4)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("saw %v, want %v", got, want)
	}
	select {
	case ev := <-ch:
		if ev.Object != nil {
			t.Fatalf("unexpected extra event %s %s", ev.Type, ev.Object.(*v1.App).Spec.Image)
		}
	case <-time.After(300 * time.Millisecond):
	}
}
