package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
)

// An agent whose node name another machine joined under went on running
// the instances bound to the name, beside that machine, retrying its
// refused heartbeats for ever. Told so (401 NodeSuperseded), it stops
// every instance it runs and starts none.
func TestASupersededAgentStopsItsInstances(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"code":401,"reason":"NodeSuperseded","message":"unauthorized: node superseded: another machine joined under that name"}`)
	}))
	defer srv.Close()
	c, err := client.New(client.Config{Server: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{cfg: Config{NodeName: "n1", HeartbeatInterval: 20 * time.Millisecond}, api: c, log: slog.New(slog.DiscardHandler),
		workers: map[string]*worker{}}
	w := newWorker(a, instanceWith(v1.Health{}))
	a.workers[w.key] = w
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go a.heartbeat(ctx)
	for !a.superseded.Load() && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	if !a.superseded.Load() {
		t.Fatal("the agent did not hear that its node was superseded")
	}
	if _, removing, gone := w.state(); !removing || !gone {
		t.Errorf("after the node was superseded its instance is not being removed (removing %v, gone %v)", removing, gone)
	}
	// It is a 401 like any other to what checks for those; a plain 401
	// (a revoked token) is not it.
	sup := &v1.StatusError{Status: v1.Status{Code: http.StatusUnauthorized, Reason: "NodeSuperseded"}}
	if !errors.Is(sup, v1.ErrUnauthorized) || !errors.Is(sup, v1.ErrNodeSuperseded) {
		t.Error("NodeSuperseded is not taken as itself and a 401")
	}
	// A 401 with another reason, or none (a proxy's answer without a
	// Gantry body), is never it: the agent would stop everything.
	for _, reason := range []string{"Unauthorized", ""} {
		plain := &v1.StatusError{Status: v1.Status{Code: http.StatusUnauthorized, Reason: reason}}
		if errors.Is(plain, v1.ErrNodeSuperseded) || !errors.Is(plain, v1.ErrUnauthorized) {
			t.Errorf("a 401 with reason %q taken for a superseded node (or not for a 401)", reason)
		}
	}
	// Nor does the agent start an instance the watch hands it after.
	later := instanceWith(v1.Health{})
	later.Metadata.Name, later.Metadata.UID = "web-2", "uid-2"
	a.desire(ctx, later)
	a.mu.Lock()
	_, started := a.workers[later.Metadata.Key()]
	a.mu.Unlock()
	if started {
		t.Error("a superseded agent started a worker for an instance the watch handed it")
	}
}
