package apiserver_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/agent"
	"github.com/gantry-dev/gantry/internal/apiserver"
	"github.com/gantry-dev/gantry/internal/apiserver/apiservertest"
	"github.com/gantry-dev/gantry/internal/logfile"
)

// A follow of an App's logs listed its instances once: the lines of an
// instance made later (a rollout's, a replacement's) never came, and the
// stream went on following the deleted instance's log until the client
// gave up. It picks up new instances, from their first line, drops
// deleted ones, and ends when the App is deleted.
func TestAppLogsFollowPicksUpNewInstances(t *testing.T) {
	nodes := apiserver.NewNodes()
	a := agent.New(agent.Config{NodeName: "n1", DataDir: t.TempDir()}, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	nodes.AddLocal("n1", a.Handler())
	ts := &testServer{apiservertest.Start(t, t.TempDir(), "127.0.0.1:0", apiserver.WithNodeProxy(nodes))}
	ctx := context.Background()
	c := ts.client(t, ts.Token)
	if _, err := c.Apply(ctx, newApp("web", "web:v1")); err != nil {
		t.Fatal(err)
	}
	if err := ts.Store.Create(ctx, &v1.Node{TypeMeta: v1.TypeMeta{Kind: "Node"}, Metadata: v1.ObjectMeta{Name: "n1"}}); err != nil {
		t.Fatal(err)
	}
	instance := func(name string, lines ...string) {
		t.Helper()
		w, err := logfile.Create(a.LogPath("default", name), logfile.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			w.Write(logfile.Entry{Time: time.Now(), Stream: logfile.Stdout, Line: l})
		}
		w.Close()
		inst := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{v1.LabelApp: "web"}},
			Spec: v1.InstanceSpec{App: "web", Revision: 1, Image: "web:v1", Node: "n1"}}
		if err := ts.Store.Create(ctx, inst); err != nil {
			t.Fatal(err)
		}
	}
	instance("web-1", "old-1", "old-2")

	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	// tail=1 asks for the last line of the instances there now; a later
	// instance's lines are all new.
	req, _ := http.NewRequestWithContext(cctx, "GET", ts.URL+"/api/v1/namespaces/default/apps/web/logs?follow=true&tail=1", nil)
	req.Header.Set("Authorization", "Bearer "+ts.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var l struct{ Instance, Line string }
			if json.Unmarshal(sc.Bytes(), &l) != nil {
				continue
			}
			select {
			case lines <- l.Instance + " " + l.Line:
			case <-cctx.Done():
				return
			}
		}
	}()
	next := func(want string) {
		t.Helper()
		select {
		case got, ok := <-lines:
			if !ok || got != want {
				t.Fatalf("got %q (open %v), want %q", got, ok, want)
			}
		case <-cctx.Done():
			t.Fatalf("no %q before the deadline", want)
		}
	}
	next("web-1 old-2")
	instance("web-2", "new-1", "new-2")
	k, _ := v1.LookupKind("Instance")
	if _, err := ts.Store.Delete(ctx, k, "default", "web-1", 0); err != nil {
		t.Fatal(err)
	}
	next("web-2 new-1")
	next("web-2 new-2")
	if _, err := c.Delete(ctx, "App", "default", "web"); err != nil {
		t.Fatal(err)
	}
	select {
	case l, ok := <-lines:
		if ok {
			t.Fatalf("after the App was deleted: %q; want the stream to end", l)
		}
	case <-cctx.Done():
		t.Fatal("the stream did not end after the App was deleted")
	}
}
