package server

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
)

// nodePortStatus carries the load balancer's node ports into the status
// of the Apps they belong to, so that `gantry describe app` and the API
// say where an exposed port is published, also when the load balancer
// chose the port. The load balancer reports with its lock held, so set
// only records the ports and wakes run, which writes.
type nodePortStatus struct {
	store *store.Store
	// apps lists the Apps as last seen (an informer's cache).
	apps func() []*v1.App
	log  *slog.Logger

	mu     sync.Mutex
	latest map[string]int // by namespace/app/port
	wake   chan struct{}
}

func newNodePortStatus(st *store.Store, apps func() []*v1.App, log *slog.Logger) *nodePortStatus {
	return &nodePortStatus{store: st, apps: apps, log: log, latest: map[string]int{}, wake: make(chan struct{}, 1)}
}

// set is the load balancer's Config.OnNodePorts.
func (n *nodePortStatus) set(ports map[string]int) {
	n.mu.Lock()
	n.latest = ports
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// run writes the statuses when the ports change, and every 30 s in case
// a write failed or an App was created after its ports were published.
func (n *nodePortStatus) run(ctx context.Context) error {
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-n.wake:
		case <-tick.C:
		}
		n.sync(ctx)
	}
}

// sync brings every App's status.nodePorts to what is published.
func (n *nodePortStatus) sync(ctx context.Context) {
	n.mu.Lock()
	byApp := map[string][]v1.NodePortStatus{}
	for k, port := range n.latest {
		i := strings.LastIndexByte(k, '/')
		if i < 0 {
			continue
		}
		byApp[k[:i]] = append(byApp[k[:i]], v1.NodePortStatus{Port: k[i+1:], NodePort: port})
	}
	n.mu.Unlock()
	for _, ports := range byApp {
		slices.SortFunc(ports, func(a, b v1.NodePortStatus) int { return strings.Compare(a.Port, b.Port) })
	}
	for _, a := range n.apps() {
		want := byApp[a.Metadata.Namespace+"/"+a.Metadata.Name]
		if slices.Equal(a.Status.NodePorts, want) {
			continue
		}
		_, err := store.Mutate(ctx, n.store, a.Metadata.Namespace, a.Metadata.Name, func(x *v1.App) error {
			if x.Metadata.UID != a.Metadata.UID || slices.Equal(x.Status.NodePorts, want) {
				return store.ErrUnchanged
			}
			x.Status.NodePorts = want
			return nil
		})
		if err != nil && !errors.Is(err, v1.ErrNotFound) && ctx.Err() == nil {
			n.log.Warn("cannot record an app's node ports in its status; trying again in 30s", "app", a.Metadata.Key(), "err", err)
		}
	}
}
