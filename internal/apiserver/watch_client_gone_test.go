package apiserver_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/apiserver"
	"github.com/gantry-dev/gantry/internal/auth"
)

// A watch whose client goes away ends on the server, with its store watch.
func TestWatchEndsWhenClientGoes(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	for i := 0; i < 30; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/api/v1/apps?watch=true&labelSelector=a%3Db", nil)
		req.Header.Set("Authorization", "Bearer "+ts.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		bufio.NewReader(resp.Body).ReadString('\n')
		cancel()
		resp.Body.Close()
	}
	left := func() int {
		buf := make([]byte, 4<<20)
		buf = buf[:runtime.Stack(buf, true)]
		return strings.Count(string(buf), "apiserver.(*Server).watch(") + strings.Count(string(buf), "store.(*Store).Watch.func")
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && left() > 0 {
		time.Sleep(100 * time.Millisecond)
	}
	if n := left(); n > 0 {
		t.Fatalf("%d watch goroutines left after their clients went away", n)
	}
}

// An idle watch gets a BOOKMARK every few seconds from the server itself:
// an external etcd sends its progress only every ten minutes, and the Go
// client takes 20 s without a line for a dead connection. The heartbeat
// names the last revision the stream has sent in full.
func TestIdleWatchGetsHeartbeats(t *testing.T) {
	// Far more often than the embedded etcd's own progress (5 s), so
	// that only the server's heartbeats can bring three in time.
	apiserver.SetWatchHeartbeat(t.Cleanup, 100*time.Millisecond)
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	marks := watchBookmarks(t, ctx, ts.URL+"/api/v1/namespaces/default/secrets?watch=true", ts.Token, 3)
	if len(marks) < 3 {
		t.Fatalf("bookmarks on an idle stream in %s: %v, want 3 (the first, then heartbeats)", time.Since(start).Round(time.Millisecond), marks)
	}
	if marks[1] < marks[0] || marks[2] < marks[1] {
		t.Fatalf("heartbeat revisions went back: %v", marks)
	}
}

// A node's watch of instances leaves out other nodes' instances. Those
// left out counted as written, so in a busy cluster a node's stream could
// go without a byte, and without heartbeats, for as long as the others
// kept changing, and its agent would take it for dead.
func TestNodeWatchGetsHeartbeatsWhileOthersChange(t *testing.T) {
	apiserver.SetWatchHeartbeat(t.Cleanup, 100*time.Millisecond)
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, nodeTok, err := auth.CreateToken(ctx, ts.Store, v1.TokenSpec{Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	// Another node's instances keep coming, faster than the heartbeat.
	go func() {
		for i := 0; ctx.Err() == nil; i++ {
			inst := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: "other-" + strconv.Itoa(i), Namespace: "default"},
				Spec: v1.InstanceSpec{App: "web", Node: "n2"}}
			ts.Store.Create(ctx, inst)
			time.Sleep(20 * time.Millisecond)
		}
	}()
	marks := watchBookmarks(t, ctx, ts.URL+"/api/v1/namespaces/default/instances?watch=true", nodeTok, 4)
	if len(marks) < 4 {
		t.Fatalf("bookmarks on node n1's stream while n2's instances kept changing: %d in 3 s, want 4 (heartbeat 100 ms)", len(marks))
	}
}

// watchBookmarks opens the watch at url with token and returns the
// revisions of its BOOKMARKs, once it has n or the stream (ctx) ends.
func watchBookmarks(t *testing.T, ctx context.Context, url, token string, n int) []int64 {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("watch %s: %d", url, resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	var marks []int64
	for len(marks) < n && sc.Scan() {
		var ev struct {
			Type     string
			Revision int64
		}
		if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Type == "BOOKMARK" {
			marks = append(marks, ev.Revision)
		}
	}
	return marks
}
