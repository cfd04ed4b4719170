package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// LogRetention is how long the log of an instance that no longer runs on
// this node is kept.
const LogRetention = 24 * time.Hour

// collectLogs deletes the log files of instances that are gone from this
// node and have not been written for LogRetention, every ten minutes.
func (a *Agent) collectLogs(ctx context.Context) {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		a.removeOldLogs(ctx, time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// removeOldLogs is one pass of collectLogs. An instance counts as gone
// when no worker serves it and the runtime has no container of it: right
// after the agent starts there are no workers yet, while the containers
// they will adopt run on (and a quiet one's log may be a day old).
func (a *Agent) removeOldLogs(ctx context.Context, now time.Time) {
	root := filepath.Join(a.cfg.DataDir, "logs")
	nss, err := os.ReadDir(root)
	if err != nil {
		return
	}
	cs, err := a.rt.List(ctx)
	if err != nil {
		a.log.Debug("log collection skipped: cannot list containers", "err", err)
		return
	}
	containers := make(map[string]bool, len(cs))
	for _, c := range cs {
		containers[c.ID] = true
	}
	for _, ns := range nss {
		files, _ := os.ReadDir(filepath.Join(root, ns.Name()))
		for _, f := range files {
			// name.log, name.log.1, …
			inst, _, _ := strings.Cut(f.Name(), ".log")
			key := ns.Name() + "/" + inst
			a.mu.Lock()
			_, running := a.workers[key]
			a.mu.Unlock()
			if running || containers[containerID(key)] {
				continue
			}
			info, err := f.Info()
			if err == nil && now.Sub(info.ModTime()) > LogRetention {
				os.Remove(filepath.Join(root, ns.Name(), f.Name()))
			}
		}
	}
}
