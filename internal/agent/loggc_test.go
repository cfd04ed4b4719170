package agent

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/runtime"
)

// listRuntime answers List with the containers it holds.
type listRuntime struct {
	Runtime
	cs []runtime.Container
}

func (z *listRuntime) List(context.Context) ([]runtime.Container, error) { return z.cs, nil }

// Run starts collectLogs before the watch has made a worker for any
// instance, so right after an agent restart a.workers is empty: the log of
// an instance whose container still ran (adopted a moment later) but had
// printed nothing for a day was deleted. Its driver wrote on into the
// unlinked file and `gantry logs` showed nothing until the next rotation.
func TestLogCollectionKeepsTheLogsOfContainersNotYetAdopted(t *testing.T) {
	dir := t.TempDir()
	rt := &listRuntime{cs: []runtime.Container{{ID: containerID("default/db-x1"), Status: runtime.StatusRunning}}}
	a := &Agent{cfg: Config{DataDir: dir}, rt: rt, workers: map[string]*worker{}, log: slog.New(slog.DiscardHandler)}
	old := time.Now().Add(-2 * LogRetention)
	write := func(inst string) string {
		path := a.LogPath("default", inst)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("{}\n"), 0o640); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(path, old, old)
		return path
	}
	kept, gone := write("db-x1"), write("db-gone")
	a.removeOldLogs(context.Background(), time.Now()) // what collectLogs does first, before a.watch runs
	if _, err := os.Stat(kept); err != nil {
		t.Fatalf("the log of a container that still runs was deleted at agent start: %v", err)
	}
	if _, err := os.Stat(gone); !os.IsNotExist(err) {
		t.Fatalf("the day-old log of an instance with no container is still there: %v", err)
	}
}
