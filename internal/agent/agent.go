package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
	"github.com/gantry-dev/gantry/internal/network"
)

// Container labels that tie a container to its instance.
const (
	labelInstance  = "gantry.dev/instance"
	labelNamespace = "gantry.dev/namespace"
	labelUID       = "gantry.dev/uid"
)

// Config configures an agent.
type Config struct {
	NodeName string
	// DataDir holds per-instance files (resolv.conf, hosts, secrets) and
	// container logs.
	DataDir string
	Labels  map[string]string
	// Address is the node's address as other machines reach it.
	Address string
	// Capacity overrides what the agent detects; Reserved is kept back
	// for the system and Gantry itself.
	Capacity v1.Capacity
	Reserved v1.Capacity
	// HeartbeatInterval is how often the node lease is renewed.
	HeartbeatInterval time.Duration
	// ClusterDomain is the DNS domain of service names.
	ClusterDomain string
	// LogMaxSize and LogMaxFiles rotate container logs.
	LogMaxSize  int64
	LogMaxFiles int
	// Network makes the node network once the server has handed out the
	// node's subnet.
	Network func(subnet string) (Network, error)
	// RuntimeName is reported in the node status.
	RuntimeName string
	// AgentURL is where the server reaches this agent for logs and exec.
	AgentURL string
	// SampleInterval is how often instance metrics are sampled and sent
	// to the server (default 10s).
	SampleInterval time.Duration
	// SecretDir holds secret files on a tmpfs (default /run/gantry/secrets
	// plus the node name).
	SecretDir string
}

func (c *Config) setDefaults() {
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = 2 * time.Second
	}
	// The search domains of resolv.conf name it without the root's dot.
	c.ClusterDomain = v1.CanonicalDomain(c.ClusterDomain)
	if c.ClusterDomain == "" {
		c.ClusterDomain = "gantry.internal"
	}
	if c.LogMaxSize == 0 {
		c.LogMaxSize = 10 << 20
	}
	if c.LogMaxFiles == 0 {
		c.LogMaxFiles = 3
	}
	if c.SecretDir == "" {
		c.SecretDir = filepath.Join("/run/gantry/secrets", c.NodeName)
	}
	if c.SampleInterval <= 0 {
		c.SampleInterval = 10 * time.Second
	}
	if c.Capacity.CPU == 0 {
		c.Capacity.CPU = v1.CPU(goruntime.NumCPU() * 1000)
	}
	if c.Capacity.Memory == 0 {
		c.Capacity.Memory = hostMemory()
	}
	if c.Capacity.Instances == 0 {
		c.Capacity.Instances = 250
	}
	if c.Reserved.Memory == 0 {
		c.Reserved.Memory = min(c.Capacity.Memory/10, 1<<30)
	}
}

// Agent runs one node's instances.
type Agent struct {
	cfg Config
	api *client.Client
	rt  Runtime
	log *slog.Logger

	net     Network
	node    atomic.Pointer[v1.Node]
	ready   chan struct{}
	mu      sync.Mutex
	workers map[string]*worker // by namespace/name
	policy  chan struct{}
	polMu   sync.Mutex
	sampler *sampler
	wg      sync.WaitGroup
	// superseded is set once the server says another machine joined
	// under this node's name: the agent runs nothing from then on.
	superseded atomic.Bool
}

// New returns an agent; Run starts it.
func New(cfg Config, api *client.Client, rt Runtime, log *slog.Logger) *Agent {
	cfg.setDefaults()
	a := &Agent{cfg: cfg, api: api, rt: rt, log: log.With("node", cfg.NodeName), workers: map[string]*worker{},
		policy: make(chan struct{}, 1), ready: make(chan struct{})}
	a.sampler = &sampler{a: a, interval: cfg.SampleInterval}
	return a
}

// Ready is closed once the node is registered and its network is up.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Node returns the node as last registered.
func (a *Agent) Node() *v1.Node { return a.node.Load() }

// Run registers the node and runs its instances until ctx ends. Running
// containers are left running when it returns: a restarted agent adopts
// them.
func (a *Agent) Run(ctx context.Context) error {
	if err := os.MkdirAll(a.cfg.DataDir, 0o700); err != nil {
		return err
	}
	node, err := a.register(ctx)
	if err != nil {
		return err
	}
	a.node.Store(node)
	a.net, err = a.cfg.Network(node.Spec.Subnet)
	if err != nil {
		return fmt.Errorf("node network on %s: %w", node.Spec.Subnet, err)
	}
	node.Status.BridgeIP = a.net.Gateway().String()
	if n, err := a.api.UpdateNodeStatus(ctx, node); err == nil {
		a.node.Store(n)
	}
	close(a.ready)
	a.log.Info("agent ready", "subnet", node.Spec.Subnet, "gateway", a.net.Gateway())

	a.wg.Add(4)
	go func() { defer a.wg.Done(); a.collectLogs(ctx) }()
	go func() { defer a.wg.Done(); a.heartbeat(ctx) }()
	go func() { defer a.wg.Done(); a.syncPolicy(ctx) }()
	go func() { defer a.wg.Done(); a.sampler.run(ctx) }()
	a.watch(ctx)
	a.wg.Wait()
	a.mu.Lock()
	workers := make([]*worker, 0, len(a.workers))
	for _, w := range a.workers {
		workers = append(workers, w)
	}
	a.mu.Unlock()
	for _, w := range workers {
		<-w.done
	}
	return nil
}

func (a *Agent) register(ctx context.Context) (*v1.Node, error) {
	labels := map[string]string{"gantry.dev/hostname": a.cfg.NodeName, "gantry.dev/os": goruntime.GOOS, "gantry.dev/arch": goruntime.GOARCH}
	for k, v := range a.cfg.Labels {
		labels[k] = v
	}
	alloc := a.cfg.Capacity
	alloc.CPU -= a.cfg.Reserved.CPU
	alloc.Memory -= a.cfg.Reserved.Memory
	st := v1.NodeStatus{
		Address: a.cfg.Address, Capacity: a.cfg.Capacity, Allocatable: alloc,
		AgentVer: "gantry", Runtime: a.cfg.RuntimeName, OS: goruntime.GOOS, Arch: goruntime.GOARCH,
		AgentURL: a.cfg.AgentURL,
	}
	if a.net != nil {
		// Registered again (the Node was deleted): the bridge it runs
		// asks for its subnet back.
		st.BridgeIP = a.net.Gateway().String()
	}
	var n *v1.Node
	err := retry(ctx, a.log, "register node: server unavailable", func() (err error) {
		n, err = a.api.RegisterNode(ctx, a.cfg.NodeName, labels, st)
		return err
	}, isUnavailable)
	switch {
	case err == nil:
		return n, nil
	case ctx.Err() != nil:
		return nil, ctx.Err()
	}
	return nil, fmt.Errorf("register node %s: %w", a.cfg.NodeName, err)
}

func (a *Agent) heartbeat(ctx context.Context) {
	t := time.NewTicker(a.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// Bounded by the next two beats, not the client's 30 s: one
		// stuck request must not outlast the node's lease.
		hctx, cancel := context.WithTimeout(ctx, 2*a.cfg.HeartbeatInterval)
		err := a.api.Heartbeat(hctx, a.cfg.NodeName)
		cancel()
		if errors.Is(err, v1.ErrNotFound) {
			// The node object was deleted; come back.
			if n, err := a.register(ctx); err == nil {
				a.node.Store(n)
				if _, sn, err := net.ParseCIDR(n.Spec.Subnet); err != nil || !sn.Contains(a.net.Gateway()) {
					a.log.Error("the node was registered again with another subnet, as another node holds its own now; restart the agent to move its bridge there", "subnet", n.Spec.Subnet, "gateway", a.net.Gateway())
				}
			}
			continue
		}
		if errors.Is(err, v1.ErrNodeSuperseded) {
			a.stepDown(err)
			continue
		}
		if err != nil && ctx.Err() == nil {
			a.log.Warn("heartbeat", "err", err)
		}
	}
}

// stepDown stops every instance this agent runs, once the server has said
// that another machine joined under the node's name: the instances bound
// to it are that machine's now, and run there too. It runs nothing more
// until it is stopped (its requests are refused anyway).
func (a *Agent) stepDown(err error) {
	// Set under mu, which desire holds to start a worker: none starts
	// after the workers are read here.
	a.mu.Lock()
	if a.superseded.Swap(true) {
		a.mu.Unlock()
		return
	}
	a.log.Error("another machine joined under this node's name: stopping every container this agent runs for it; stop this agent (gantry down), or join it again under another name", "err", err)
	workers := make([]*worker, 0, len(a.workers))
	for _, w := range a.workers {
		workers = append(workers, w)
	}
	a.mu.Unlock()
	for _, w := range workers {
		w.remove(true)
	}
}

// watch follows the instances bound to this node and keeps one worker per
// instance. On a resync it lists again and stops workers of instances
// that are gone.
func (a *Agent) watch(ctx context.Context) {
	// Watches that keep ending at once (a lasting error such as a
	// certificate the server refuses) are started again less and less
	// often, up to every 5 s.
	fails := 0
	for ctx.Err() == nil {
		seen := map[string]bool{}
		listing := true
		for ev := range a.api.Watch(ctx, "Instance", "", client.WatchOptions{}) {
			switch ev.Type {
			case "ERROR":
				if errors.Is(ev.Err, v1.ErrNodeSuperseded) {
					a.stepDown(ev.Err)
				}
				a.log.Warn("instance watch ended; listing again", "err", ev.Err)
				fails++
			case "BOOKMARK":
				fails = 0
				if listing {
					listing = false
					a.retire(seen)
					a.collect(ctx, seen)
				}
			case "DELETED":
				i := ev.Object.(*v1.Instance)
				a.forget(i, true)
			default:
				i := ev.Object.(*v1.Instance)
				if i.Spec.Node != a.cfg.NodeName {
					a.forget(i, false)
					continue
				}
				seen[i.Metadata.Key()] = true
				a.desire(ctx, i)
			}
		}
		sleep(ctx, min(200*time.Millisecond<<min(fails, 5), 5*time.Second))
	}
}

// desire hands the newest version of an instance to its worker, starting
// one if needed.
func (a *Agent) desire(ctx context.Context, i *v1.Instance) {
	key := i.Metadata.Key()
	a.mu.Lock()
	if a.superseded.Load() {
		a.mu.Unlock()
		return // another machine runs the node's instances now
	}
	w, ok := a.workers[key]
	var prev <-chan struct{}
	if ok && w.uid != i.Metadata.UID {
		// A new instance of the same name: the old worker must go first.
		// Both use the same container, namespace and files, so the new
		// one waits until the old one has removed them.
		w.remove(true)
		prev, ok = w.done, false
	}
	if !ok {
		w = newWorker(a, i)
		a.workers[key] = w
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			if prev != nil {
				select {
				case <-prev:
				case <-ctx.Done():
				}
			}
			w.run(ctx)
			a.mu.Lock()
			if a.workers[key] == w {
				delete(a.workers, key)
			}
			a.mu.Unlock()
			a.policyChanged()
		}()
	}
	a.mu.Unlock()
	w.update(i)
}

// forget stops the worker of an instance that was deleted (gone: no drain)
// or moved to another node.
func (a *Agent) forget(i *v1.Instance, gone bool) {
	a.mu.Lock()
	w, ok := a.workers[i.Metadata.Key()]
	a.mu.Unlock()
	if ok && w.uid == i.Metadata.UID {
		w.remove(gone)
	}
}

// retire removes, without a drain, the instances whose workers run but
// that a fresh list (desired) no longer has: they were deleted while the
// watch was away (a node cut off for longer than the history kept, a
// watch the server ended), so no DELETED event will come for them.
func (a *Agent) retire(desired map[string]bool) {
	a.mu.Lock()
	var gone []*worker
	for key, w := range a.workers {
		if !desired[key] {
			gone = append(gone, w)
		}
	}
	a.mu.Unlock()
	for _, w := range gone {
		a.log.Info("instance deleted while the watch was away; removing it", "instance", w.key)
		w.remove(true)
	}
}

// collect removes containers and network attachments of instances that no
// longer exist, after the watch has delivered the full list once (on
// start, this is what cleans up after a crash or a node's return).
func (a *Agent) collect(ctx context.Context, desired map[string]bool) {
	cs, err := a.rt.List(ctx)
	if err != nil {
		a.log.Warn("list containers for cleanup", "err", err)
		return
	}
	for _, c := range cs {
		ns, name := c.Labels[labelNamespace], c.Labels[labelInstance]
		if name == "" || desired[ns+"/"+name] || a.hasWorker(c.ID) {
			continue // a worker (removing it, if retired) owns it
		}
		a.log.Info("removing container of a deleted instance", "container", c.ID)
		if err := a.rt.Stop(ctx, c.ID, 5*time.Second); err != nil {
			a.log.Warn("stop orphan", "container", c.ID, "err", err)
		}
		if err := a.rt.Remove(ctx, c.ID); err != nil {
			a.log.Warn("remove orphan", "container", c.ID, "err", err)
		}
		a.net.Teardown(ctx, c.ID)
		os.RemoveAll(a.instanceDir(c.ID))
		os.RemoveAll(a.secretDir(c.ID))
	}
	keep := map[string]bool{}
	for key := range desired {
		keep[containerID(key)] = true
	}
	// Files of instances that are gone, whose containers were gone
	// first (an agent stopped between removing a container and
	// deleting the object, say).
	// Their secret files go too: they sit on the node's tmpfs until it
	// reboots otherwise.
	for _, parent := range []string{filepath.Join(a.cfg.DataDir, "instances"), a.cfg.SecretDir} {
		dirs, err := os.ReadDir(parent)
		if err != nil {
			continue
		}
		for _, d := range dirs {
			if id := d.Name(); d.IsDir() && !keep[id] && !a.hasWorker(id) {
				os.RemoveAll(filepath.Join(parent, id))
			}
		}
	}
	if err := a.net.GC(ctx, func(id string) bool { return keep[id] || a.hasWorker(id) }); err != nil {
		a.log.Warn("network cleanup", "err", err)
	}
	a.policyChanged()
}

func (a *Agent) hasWorker(id string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, w := range a.workers {
		if w.id == id {
			return true
		}
	}
	return false
}

// policyChanged asks for the isolation rules to be recomputed.
func (a *Agent) policyChanged() {
	select {
	case a.policy <- struct{}{}:
	default:
	}
}

// syncPolicy keeps the node's namespace isolation rules in step with the
// instances on it, and reapplies them every network.PolicyRecheck so that
// rules someone removed come back even when nothing changes.
func (a *Agent) syncPolicy(ctx context.Context) {
	tick := time.NewTicker(network.PolicyRecheck)
	defer tick.Stop()
	for {
		check := false
		select {
		case <-ctx.Done():
			return
		case <-a.policy:
		case <-tick.C:
			check = true
		}
		if err := a.writePolicy(ctx, check); err != nil && ctx.Err() == nil {
			a.log.Warn("apply network isolation", "err", err)
		}
	}
}

// applyPolicy writes the isolation rules for every instance on the node.
// New instances are unreachable from other instances until it ran, so a
// worker calls it before starting its container.
func (a *Agent) applyPolicy(ctx context.Context) error { return a.writePolicy(ctx, false) }

// writePolicy is applyPolicy that, with check, reads back the rules in
// force first (network.Network.CheckPolicy).
func (a *Agent) writePolicy(ctx context.Context, check bool) error {
	a.polMu.Lock()
	defer a.polMu.Unlock()
	a.mu.Lock()
	var members []network.Member
	for _, w := range a.workers {
		if m, ok := w.member(); ok {
			members = append(members, m)
		}
	}
	a.mu.Unlock()
	if check {
		return a.net.CheckPolicy(ctx, members)
	}
	return a.net.SetPolicy(ctx, members)
}

// containerID names an instance's container, netns and files.
func containerID(key string) string {
	b := []byte(key)
	for i, c := range b {
		if c == '/' {
			b[i] = '_'
		}
	}
	return string(b)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// hostMemory reads MemTotal from /proc/meminfo.
func hostMemory() v1.Bytes {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 1 << 30
	}
	var kb int64
	for _, line := range splitLines(string(b)) {
		if n, _ := fmt.Sscanf(line, "MemTotal: %d kB", &kb); n == 1 {
			return v1.Bytes(kb << 10)
		}
	}
	return 1 << 30
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}
