package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/gantry-dev/gantry/internal/network"
	"github.com/gantry-dev/gantry/internal/pki"
	"github.com/gantry-dev/gantry/internal/runtime"
)

// state is what a node records about itself so that Down can undo it
// without a server.
type state struct {
	Network          network.Config `json:"network"`
	ContainerdSocket string         `json:"containerdSocket,omitempty"`
	// SecretDir holds the instances' secret files (on a tmpfs).
	SecretDir string `json:"secretDir,omitempty"`
}

func statePath(dir string) string { return filepath.Join(dir, "node.json") }

// Ran reports whether a node ran with dataDir as its directory (and left
// what Down removes).
func Ran(dataDir string) bool {
	_, err := os.Stat(statePath(dataDir))
	return err == nil
}

// bridgeWasThere reports whether the node's bridge belongs to the machine
// rather than to Gantry: as the node's state records it, or, at its first
// start (no state yet), whether the bridge exists already. gantry down
// leaves such a bridge (a LAN or VM bridge named with --bridge) in place.
func bridgeWasThere(dir, bridge string) bool {
	if b, err := os.ReadFile(statePath(dir)); err == nil {
		var st state
		if json.Unmarshal(b, &st) == nil && st.Network.BridgeName == bridge {
			return st.Network.KeepBridge
		}
	}
	if bridge == "" {
		bridge = network.DefaultBridgeName
	}
	_, err := net.InterfaceByName(bridge)
	return err == nil
}

func saveState(dir string, s state) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	// Whole or not at all: gantry down reads it to know what to remove.
	return pki.WriteFileAtomic(statePath(dir), b, 0o600)
}

// Down removes what a node left on the machine: every Gantry container
// and its snapshot, the instance network (netns, IPs, bridge, iptables
// chains) and the private containerd, with any shim of it left without a
// task. The node's agent must not be running. Images and logs stay unless
// the caller removes dataDir.
func Down(ctx context.Context, dataDir string, log *slog.Logger) error {
	b, err := os.ReadFile(statePath(dataDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil // never started a node here
	}
	if err != nil {
		return err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("%s: %w", statePath(dataDir), err)
	}
	var errs []error
	addr := st.ContainerdSocket
	var d *runtime.Daemon
	if addr == "" {
		d, err = runtime.StartDaemon(ctx, runtime.DaemonConfig{Dir: filepath.Join(dataDir, "containerd")}, log)
		if err != nil {
			return fmt.Errorf("reach containerd to remove containers: %w", err)
		}
		addr = d.Address()
	}
	drv, err := runtime.New(ctx, runtime.Config{Address: addr}, log)
	if err != nil {
		errs = append(errs, err)
	} else {
		cs, err := drv.List(ctx)
		if err != nil {
			errs = append(errs, err)
		}
		for _, c := range cs {
			if err := drv.Stop(ctx, c.ID, 2*time.Second); err != nil {
				errs = append(errs, fmt.Errorf("stop %s: %w", c.ID, err))
			}
			if err := drv.Remove(ctx, c.ID); err != nil {
				errs = append(errs, fmt.Errorf("remove %s: %w", c.ID, err))
			}
		}
		drv.Close()
	}
	if st.Network.Subnet != "" {
		nw, err := network.New(st.Network, log)
		if err != nil {
			errs = append(errs, err)
		} else if err := nw.Cleanup(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if st.SecretDir != "" {
		if err := unmountSecretFS(st.SecretDir); err != nil {
			errs = append(errs, err)
		} else if err := os.RemoveAll(st.SecretDir); err != nil {
			errs = append(errs, err)
		}
	}
	if d != nil {
		if err := d.Stop(); err != nil {
			errs = append(errs, err)
		} else if n, err := killOrphanShims(addr); err != nil {
			errs = append(errs, err)
		} else if n > 0 {
			log.Warn("ended containerd shims left without a task (containerd stopped while creating it)", "count", n)
		}
	}
	return errors.Join(errs...)
}
