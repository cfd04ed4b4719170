package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
	"github.com/gantry-dev/gantry/internal/runtime"
)

// resyncRuntime: the instance's container exists; Inspect keeps saying
// containerd is restarting, which parks the worker in run() until it is
// told to remove the instance (enough to see whether anyone tells it).
type resyncRuntime struct {
	Runtime
	mu    sync.Mutex
	calls []string
}

func (f *resyncRuntime) Inspect(context.Context, string) (runtime.Container, error) {
	return runtime.Container{}, fmt.Errorf("containerd restarting: %w", v1.ErrUnavailable)
}
func (f *resyncRuntime) List(context.Context) ([]runtime.Container, error) {
	return []runtime.Container{{ID: "default_web-1", Labels: map[string]string{labelInstance: "web-1", labelNamespace: "default", labelUID: "u1"}}}, nil
}
func (f *resyncRuntime) Stop(_ context.Context, id string, _ time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "Stop "+id)
	return nil
}
func (f *resyncRuntime) Remove(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "Remove "+id)
	return nil
}

type resyncNet struct{ Network }

func (resyncNet) Teardown(context.Context, string) error      { return nil }
func (resyncNet) GC(context.Context, func(string) bool) error { return nil }

// The instance is deleted while the agent's watch is cut off (history
// compacted, or the server's etcd watch failing): the watch ends with
// ERROR and the agent lists again. The list no longer has the instance,
// so its worker must stop it and go, rather than keep supervising (and
// restarting) a container of an instance that no longer exists.
func TestRelistRetiresWorkersOfDeletedInstances(t *testing.T) {
	inst := instanceWith(v1.Health{})
	obj, _ := json.Marshal(inst)
	var conns atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("watch") != "true" {
			w.Header().Set("Content-Type", "application/json")
			w.Write(obj)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		switch conns.Add(1) {
		case 1:
			fmt.Fprintf(w, `{"type":"ADDED","revision":5,"object":%s}`+"\n", obj)
			fmt.Fprintln(w, `{"type":"BOOKMARK","revision":5}`)
			w.(http.Flusher).Flush()
			time.Sleep(300 * time.Millisecond)
			fmt.Fprintln(w, `{"type":"ERROR","revision":9,"error":{"code":410,"reason":"ResyncRequired","message":"compacted"}}`)
		default:
			// The instance was deleted meanwhile: the new list lacks it.
			fmt.Fprintln(w, `{"type":"BOOKMARK","revision":20}`)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}
	}))
	defer srv.Close()
	c, err := client.New(client.Config{Server: srv.URL, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rt := &resyncRuntime{}
	a := &Agent{
		cfg: Config{NodeName: "n1", DataDir: dir, SecretDir: filepath.Join(dir, "secrets"), ClusterDomain: "gantry.internal"},
		api: c, rt: rt, net: resyncNet{}, log: slog.New(slog.DiscardHandler), workers: map[string]*worker{},
		policy: make(chan struct{}, 1),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.watch(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for conns.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	// The worker of the deleted instance stops its container and leaves.
	var w *worker
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		a.mu.Lock()
		w = a.workers["default/web-1"]
		a.mu.Unlock()
		if w == nil {
			break
		}
	}
	rt.mu.Lock()
	calls := fmt.Sprint(rt.calls)
	rt.mu.Unlock()
	cancel()
	<-done
	if w != nil {
		_, removing, _ := w.state()
		t.Fatalf("after a relist without instance default/web-1 its worker still runs (removing: %v; runtime calls %s)", removing, calls)
	}
	if calls != "[Stop default_web-1 Remove default_web-1]" {
		t.Errorf("runtime calls after the relist: %s; want the container stopped and removed once", calls)
	}
}
