package apiserver_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/apiserver"
	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/store"
)

// streamed is one line of a watch stream as a client reads it.
type streamed struct {
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object"`
	Error  *v1.Status      `json:"error"`
}

// openWatch starts the watch at path with token and returns its lines
// once its first BOOKMARK says it is running; the channel closes when
// the stream ends.
func openWatch(t *testing.T, ctx context.Context, ts *testServer, token, path string) <-chan streamed {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		t.Fatalf("watch %s: HTTP %d", path, resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() && !strings.Contains(sc.Text(), `"BOOKMARK"`) {
	}
	ch := make(chan streamed, 64)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		for sc.Scan() {
			var ev streamed
			json.Unmarshal(sc.Bytes(), &ev)
			select {
			case ch <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}

// streamError reads the stream until it ends and returns its ERROR, or
// nil if it ended (or ctx did) without one.
func streamError(ctx context.Context, ch <-chan streamed) *v1.Status {
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return nil
			}
			if ev.Type == "ERROR" {
				return ev.Error
			}
		case <-ctx.Done():
			return nil
		}
	}
}

func applyManifest(t *testing.T, ts *testServer, m string) {
	t.Helper()
	o, err := v1.DecodeManifest([]byte(m))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.client(t, ts.Token).Apply(context.Background(), o); err != nil {
		t.Fatalf("apply %q: %v", m, err)
	}
}

// A watch was authorized once, when it began, and streamed on after its
// caller's token was deleted, their user disabled, or the binding or
// role that allowed it taken away. The write wakes the stream, which ends
// with an ERROR saying why.
func TestWatchEndsWhenItsCallerLosesTheRight(t *testing.T) {
	// No heartbeat comes in time: only the write's wake-up can end them.
	apiserver.SetWatchHeartbeat(t.Cleanup, time.Hour)
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	applyManifest(t, ts, "kind: Role\nname: app-watcher\nrules: [{verbs: [watch], resources: [apps]}]\n")
	tests := []struct {
		name   string
		user   string
		role   string
		take   func(t *testing.T, tok string)
		code   int
		reason string
	}{
		{"deleting the token ends it", "tess", "viewer", func(t *testing.T, tok string) {
			id, _, _ := auth.ParseToken(tok)
			if code, out := raw(t, ts, http.MethodDelete, "/api/v1/tokens/"+id, "", nil); code != http.StatusOK {
				t.Fatalf("delete token: %d %s", code, trunc(out))
			}
		}, http.StatusUnauthorized, "Unauthorized"},
		{"disabling the user ends it", "uma", "viewer", func(t *testing.T, tok string) {
			applyManifest(t, ts, "kind: User\nname: uma\ndisabled: true\n")
		}, http.StatusUnauthorized, "Unauthorized"},
		{"removing the binding ends it", "bea", "viewer", func(t *testing.T, tok string) {
			if code, out := raw(t, ts, http.MethodDelete, "/api/v1/rolebindings/bea-default", "", nil); code != http.StatusOK {
				t.Fatalf("delete binding: %d %s", code, trunc(out))
			}
		}, http.StatusForbidden, "Forbidden"},
		{"taking the rule from the role ends it", "rho", "app-watcher", func(t *testing.T, tok string) {
			applyManifest(t, ts, "kind: Role\nname: app-watcher\nrules: [{verbs: [get], resources: [apps]}]\n")
		}, http.StatusForbidden, "Forbidden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, tok := govUser(t, ts, tt.user, tt.role, "default")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			ch := openWatch(t, ctx, ts, tok, "/api/v1/namespaces/default/apps?watch=true")
			tt.take(t, tok)
			st := streamError(ctx, ch)
			if st == nil {
				t.Fatalf("the watch went on (or ended without an ERROR); want an ERROR %d %s", tt.code, tt.reason)
			}
			if st.Code != tt.code || st.Reason != tt.reason || !strings.Contains(st.Message, "watch ended") {
				t.Errorf("ERROR %d %s %q; want %d %s saying the watch ended", st.Code, st.Reason, st.Message, tt.code, tt.reason)
			}
			if tt.code == http.StatusForbidden && !strings.Contains(st.Message, fmt.Sprintf("user %q may not watch apps", tt.user)) {
				t.Errorf("ERROR message %q does not name the missing right", st.Message)
			}
		})
	}
}

// A write that takes nothing from a watch's caller (another Role, another
// user's binding) wakes the stream for a check, and it goes on: a user's
// watch and a node's alike.
func TestWatchGoesOnWhenAnUnrelatedRightChanges(t *testing.T) {
	apiserver.SetWatchHeartbeat(t.Cleanup, time.Hour)
	type check struct {
		user string
		err  error
	}
	checked := make(chan check, 64)
	apiserver.SetWatchRechecked(t.Cleanup, func(user string, err error) {
		select {
		case checked <- check{user, err}:
		default:
		}
	})
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, userTok := govUser(t, ts, "vic", "viewer", "default")
	_, nodeTok, err := auth.CreateToken(ctx, ts.Store, v1.TokenSpec{User: auth.NodeUser("n1"), Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		user   string
		token  string
		path   string
		change string
		make   func(t *testing.T) string // makes an object the stream must then bring
	}{
		{"a user's watch after another Role is written", "vic", userTok, "/api/v1/namespaces/default/apps?watch=true",
			"kind: Role\nname: unrelated\nrules: [{verbs: [get], resources: [apps]}]\n",
			func(t *testing.T) string {
				applyManifest(t, ts, "kind: App\nname: web\nimage: web:v1\n")
				return `"name":"web"`
			}},
		{"a node's watch after a binding is written", auth.NodeUser("n1"), nodeTok, "/api/v1/namespaces/default/instances?watch=true",
			"kind: RoleBinding\nname: vic-extra\nuser: vic\nrole: developer\nnamespace: default\n",
			func(t *testing.T) string {
				inst := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: "on-n1", Namespace: "default"},
					Spec: v1.InstanceSpec{App: "web", Node: "n1"}}
				if err := ts.Store.Create(ctx, inst); err != nil {
					t.Fatal(err)
				}
				return `"name":"on-n1"`
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wctx, stop := context.WithCancel(ctx)
			defer stop()
			ch := openWatch(t, wctx, ts, tt.token, tt.path)
			applyManifest(t, ts, tt.change)
			for c := (check{}); c.user != tt.user; {
				select {
				case c = <-checked:
				case <-ctx.Done():
					t.Fatal("the change did not wake the watch for a check")
				}
				if c.user == tt.user && c.err != nil {
					t.Fatalf("re-check after an unrelated change: %v", c.err)
				}
			}
			want := tt.make(t)
			for {
				select {
				case ev, ok := <-ch:
					if !ok {
						t.Fatal("the stream ended")
					}
					if ev.Type == "ERROR" {
						t.Fatalf("the stream ended with ERROR %+v", ev.Error)
					}
					if ev.Type == "ADDED" && strings.Contains(string(ev.Object), want) {
						return
					}
				case <-ctx.Done():
					t.Fatalf("no ADDED event with %s", want)
				}
			}
		})
	}
}

// What no write through this server announces is seen at a heartbeat: a
// token that expires, and a binding another API server (here the store
// itself) removes.
func TestWatchEndsAtAHeartbeatWhenTheRightLapses(t *testing.T) {
	apiserver.SetWatchHeartbeat(t.Cleanup, 50*time.Millisecond)
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _ = govUser(t, ts, "eve", "viewer", "default")
	soon := time.Now().Add(3 * time.Second)
	_, expiring, err := auth.CreateToken(ctx, ts.Store, v1.TokenSpec{User: "eve", Expires: &soon})
	if err != nil {
		t.Fatal(err)
	}
	_, otherTok := govUser(t, ts, "flo", "viewer", "default")
	tests := []struct {
		name   string
		token  string
		lapse  func(t *testing.T)
		reason string
	}{
		{"an expired token", expiring, func(t *testing.T) {}, "Unauthorized"},
		{"a binding deleted elsewhere", otherTok, func(t *testing.T) {
			if _, err := ts.Store.Delete(ctx, store.KindFor[*v1.RoleBinding](), "", "flo-default", 0); err != nil {
				t.Fatal(err)
			}
		}, "Forbidden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch := openWatch(t, ctx, ts, tt.token, "/api/v1/namespaces/default/apps?watch=true")
			tt.lapse(t)
			st := streamError(ctx, ch)
			if st == nil || st.Reason != tt.reason {
				t.Fatalf("stream ended with %+v; want an ERROR %s", st, tt.reason)
			}
		})
	}
}
