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
		a.removeOldLogs(time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *Agent) removeOldLogs(now time.Time) {
	root := filepath.Join(a.cfg.DataDir, "logs")
	nss, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, ns := range nss {
		files, _ := os.ReadDir(filepath.Join(root, ns.Name()))
		for _, f := range files {
			// name.log, name.log.1, …
			inst, _, _ := strings.Cut(f.Name(), ".log")
			a.mu.Lock()
			_, running := a.workers[ns.Name()+"/"+inst]
			a.mu.Unlock()
			if running {
				continue
			}
			info, err := f.Info()
			if err == nil && now.Sub(info.ModTime()) > LogRetention {
				os.Remove(filepath.Join(root, ns.Name(), f.Name()))
			}
		}
	}
}
