package discovery

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/informer"
	"github.com/gantry-dev/gantry/internal/store"
)

// Watcher builds snapshots from the store: it follows Apps, Instances and
// Nodes and publishes a new snapshot on every change that affects a
// service.
type Watcher struct {
	*Broadcaster
	apps      *informer.Informer[*v1.App]
	instances *informer.Informer[*v1.Instance]
	nodes     *informer.Informer[*v1.Node]
	log       *slog.Logger

	mu      sync.Mutex
	pending map[string]bool
	kick    chan struct{}
}

// NewWatcher returns a watcher; instances and apps may be informers
// shared with other components (nil for private ones). Run runs them
// (a shared informer runs once however many call it).
func NewWatcher(s *store.Store, instances *informer.Informer[*v1.Instance], apps *informer.Informer[*v1.App], log *slog.Logger) *Watcher {
	if apps == nil {
		apps = informer.New[*v1.App](s, log)
	}
	w := &Watcher{
		Broadcaster: NewBroadcaster(),
		apps:        apps,
		instances:   instances,
		nodes:       informer.New[*v1.Node](s, log),
		log:         log,
		pending:     map[string]bool{},
		kick:        make(chan struct{}, 1),
	}
	if w.instances == nil {
		w.instances = informer.New[*v1.Instance](s, log)
	}
	w.apps.OnChange(func(_, a *v1.App, _ bool) { w.dirty(a.Metadata.Key()) })
	w.instances.OnChange(func(old, i *v1.Instance, deleted bool) {
		if deleted || old == nil || servingChanged(old, i) {
			w.dirty(i.Metadata.Namespace + "/" + i.Spec.App)
		}
	})
	// A node that stops (or starts again) answering takes its instances
	// out of (or back into) traffic at once, before they are evicted.
	w.nodes.OnChange(func(old, n *v1.Node, deleted bool) {
		if old != nil && !deleted && old.Status.Ready == n.Status.Ready {
			return
		}
		for _, i := range w.instances.List(func(i *v1.Instance) bool { return i.Spec.Node == n.Metadata.Name }) {
			w.dirty(i.Metadata.Namespace + "/" + i.Spec.App)
		}
	})
	return w
}

// nodeDown reports whether an instance's node is not ready or does not
// exist: deleted while this server watched, or before it started (the
// node controller evicts such orphans later). Snapshots are built once
// the node informer has synced, and a node that registers later
// rebuilds its instances' services.
func (w *Watcher) nodeDown(name string) bool {
	if name == "" {
		return false
	}
	n, ok := w.nodes.Get("", name)
	if !ok {
		return true
	}
	return !n.Status.Ready
}

// servingChanged reports whether an instance update matters to traffic.
func servingChanged(a, b *v1.Instance) bool {
	return a.Status.Ready != b.Status.Ready || a.Status.IP != b.Status.IP ||
		(a.Metadata.Deleting == nil) != (b.Metadata.Deleting == nil) || a.Spec.Node != b.Spec.Node
}

func (w *Watcher) dirty(key string) {
	w.mu.Lock()
	w.pending[key] = true
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Run follows the store until ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	go w.apps.Run(ctx)
	go w.instances.Run(ctx)
	go w.nodes.Run(ctx)
	for _, ch := range []<-chan struct{}{w.apps.Synced(), w.instances.Synced(), w.nodes.Synced()} {
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
	}
	w.rebuildAll()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		}
		w.mu.Lock()
		keys := w.pending
		w.pending = map[string]bool{}
		w.mu.Unlock()
		w.rebuild(keys)
	}
}

func (w *Watcher) rebuildAll() {
	keys := map[string]bool{}
	for _, a := range w.apps.List(nil) {
		keys[a.Metadata.Key()] = true
	}
	w.rebuild(keys)
}

// rebuild publishes a snapshot in which the given services are rebuilt
// and every other one is shared with the previous snapshot.
func (w *Watcher) rebuild(keys map[string]bool) {
	cur := w.Current()
	// Read before the objects, so that the snapshot reflects at least
	// this revision.
	rev := max(w.apps.Revision(), w.instances.Revision(), w.nodes.Revision(), cur.Revision)
	next := &Snapshot{Revision: rev, Time: time.Now(), Services: maps.Clone(cur.Services)}
	for key := range keys {
		ns, name := splitKey(key)
		a, ok := w.apps.Get(ns, name)
		if !ok {
			delete(next.Services, key)
			continue
		}
		next.Services[key] = w.service(a)
	}
	w.Publish(next)
}

func splitKey(k string) (string, string) {
	for i := 0; i < len(k); i++ {
		if k[i] == '/' {
			return k[:i], k[i+1:]
		}
	}
	return "", k
}

func (w *Watcher) service(a *v1.App) *Service {
	svc := &Service{Namespace: a.Metadata.Namespace, Name: a.Metadata.Name, Ports: a.Spec.Ports, Routes: a.Spec.Routes,
		Balancing: a.Spec.LoadBalancing}
	if a.Spec.Network != nil {
		svc.AllowFrom = a.Spec.Network.AllowFrom
	}
	for _, np := range a.Status.NodePorts {
		if svc.NodePorts == nil {
			svc.NodePorts = map[string]int{}
		}
		svc.NodePorts[np.Port] = np.NodePort
	}
	insts := w.instances.List(func(i *v1.Instance) bool {
		return i.Metadata.Namespace == a.Metadata.Namespace && i.Spec.App == a.Metadata.Name
	})
	sort.Slice(insts, func(x, y int) bool { return insts[x].Metadata.Name < insts[y].Metadata.Name })
	for _, i := range insts {
		if i.Status.IP == "" {
			continue
		}
		ep := Endpoint{Instance: i.Metadata.Name, IP: i.Status.IP, Node: i.Spec.Node, Ports: ownPorts(i.Spec.Template.Ports, a.Spec.Ports)}
		if i.Metadata.Deleting != nil || i.ForeignTo(a) {
			svc.Draining = append(svc.Draining, ep)
			continue
		}
		svc.All = append(svc.All, ep)
		if Serves(i) && !w.nodeDown(i.Spec.Node) {
			svc.Ready = append(svc.Ready, ep)
		}
	}
	return svc
}

// ownPorts is an instance's port numbers (keyed by PortKey) where they
// differ from the App's, or nil. A named App port is the instance's port
// of that name; one the instance has no port of that name for, and an
// unnamed one, is matched by number and transport (a port renamed, or
// left unnamed beside a new one, still listens where it did); 0 if none
// matches (a port renamed and renumbered at once must not send the new
// name's traffic to the old instances' new number).
func ownPorts(inst, app []v1.Port) map[string]int {
	var out map[string]int
	for _, q := range app {
		n := 0
		if q.Name != "" {
			for _, p := range inst {
				if p.Name == q.Name {
					n = p.Port
					break
				}
			}
		}
		if n == 0 {
			for _, p := range inst {
				// Not a port that serves another App port by name
				// (metrics on 8080 moving to 9100 while http takes
				// 8080: the old instances' 8080 is still metrics).
				if p.Port == q.Port && (p.Protocol == v1.ProtocolUDP) == (q.Protocol == v1.ProtocolUDP) &&
					(p.Name == "" || !slices.ContainsFunc(app, func(o v1.Port) bool { return o.Name == p.Name })) {
					n = p.Port
					break
				}
			}
		}
		if n != q.Port {
			if out == nil {
				out = map[string]int{}
			}
			out[PortKey(q)] = n
		}
	}
	return out
}

// Serves is the rule of who gets traffic: ready, addressed, and not being
// deleted; the Watcher also leaves out instances on a node that is not
// ready (its heartbeat stopped) and those of a deleted namesake App.
func Serves(i *v1.Instance) bool {
	return i.Status.Ready && i.Status.IP != "" && i.Metadata.Deleting == nil
}
