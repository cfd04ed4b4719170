// Package discovery keeps the live view of services that DNS and the
// ingress serve: for every App, its ports, its routes and the addresses of
// its ready instances.
//
// A Source publishes immutable Snapshots. Consumers never see a snapshot
// change under them; they swap to the next one when it arrives. The
// package owns the rule of who gets traffic: an instance that is ready, has
// an IP and is not being deleted (draining instances leave at once).
package discovery

import (
	"context"
	"sort"
	"strconv"
	"sync"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// Endpoint is one instance's address.
type Endpoint struct {
	Instance string `json:"instance"`
	IP       string `json:"ip"`
	Node     string `json:"node,omitempty"`
	// Ports are the instance's own port numbers by name, where its
	// revision's template differs from the App's (a rollout that moves
	// a port: the old instances still listen on the old number); 0 for
	// an App port the instance's template has no port of that name for
	// (a rollout that adds or renames one), which it gets no traffic of.
	// Nil when they agree. An unnamed port is keyed by its number and
	// transport ("8080/tcp"; see PortKey): an App may have several.
	Ports map[string]int `json:"ports,omitempty"`
}

// PortKey is how Endpoint.Ports names an App port: its name, or for an
// unnamed one its number and transport, which no name can spell (names
// have no slash).
func PortKey(p v1.Port) string {
	if p.Name != "" {
		return p.Name
	}
	transport := "tcp"
	if p.Protocol == v1.ProtocolUDP {
		transport = "udp"
	}
	return strconv.Itoa(p.Port) + "/" + transport
}

// PortFor is the number the instance listens on for the App's port p, 0
// if it has no such port (see Ports): leave it out of that port's
// endpoints.
func (e Endpoint) PortFor(p v1.Port) int {
	if n, ok := e.Ports[PortKey(p)]; ok {
		return n
	}
	return p.Port
}

// Service is an App as DNS and the ingress see it.
type Service struct {
	Namespace string     `json:"namespace"`
	Name      string     `json:"name"`
	Ports     []v1.Port  `json:"ports,omitempty"`
	Routes    []v1.Route `json:"routes,omitempty"`
	// Ready are the instances that should get traffic, sorted by name.
	Ready []Endpoint `json:"ready"`
	// All are every instance that has an IP, ready or not, for the
	// per-instance DNS names.
	All []Endpoint `json:"all"`
	// Draining are the instances being deleted that still have an IP,
	// and those made for a deleted App of the same name (see
	// v1.LabelAppUID): out of traffic and of DNS names, but still
	// running, so DNS still knows their address as an instance of this
	// namespace.
	Draining []Endpoint `json:"draining,omitempty"`
	// AllowFrom lists other namespaces allowed to connect.
	AllowFrom []string `json:"allowFrom,omitempty"`
	// NodePorts are the node ports the App's status says its exposed
	// ports are published on, by port name: the load balancer keeps the
	// ones it chose over a restart.
	NodePorts map[string]int `json:"nodePorts,omitempty"`
	// Balancing is the App's spec.loadBalancing ("" for the load
	// balancer's default).
	Balancing string `json:"balancing,omitempty"`
}

// Key is "namespace/name".
func (s *Service) Key() string { return s.Namespace + "/" + s.Name }

// Port returns the port with the given name, or the first port of the
// given protocol when name is empty.
func (s *Service) Port(name, protocol string) (v1.Port, bool) {
	for _, p := range s.Ports {
		if name != "" && p.Name == name {
			return p, true
		}
		if name == "" && (protocol == "" || p.Protocol == protocol) {
			return p, true
		}
	}
	return v1.Port{}, false
}

// Snapshot is an immutable view of every service at one store revision.
type Snapshot struct {
	// Revision is the store revision the snapshot reflects.
	Revision int64
	// Time is when the snapshot was built.
	Time     time.Time
	Services map[string]*Service // by Key
	// Initial marks the empty snapshot a Broadcaster holds until its
	// first Publish: it reflects no read of the store, so a service
	// missing from it may well exist (DNS answers SERVFAIL, not
	// NXDOMAIN, for it).
	Initial bool
}

// Service looks up a service by namespace and name.
func (s *Snapshot) Service(ns, name string) *Service {
	if s == nil {
		return nil
	}
	return s.Services[ns+"/"+name]
}

// Sorted returns the services ordered by key.
func (s *Snapshot) Sorted() []*Service {
	out := make([]*Service, 0, len(s.Services))
	for _, svc := range s.Services {
		out = append(out, svc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

// Source publishes snapshots.
type Source interface {
	// Current returns the newest snapshot; never nil once the source has
	// synced (before, nil or an empty snapshot marked Initial).
	Current() *Snapshot
	// Subscribe returns a channel that receives the current snapshot at
	// once and then every newer one until ctx ends. A slow reader skips
	// intermediate snapshots but always gets the newest.
	Subscribe(ctx context.Context) <-chan *Snapshot
}

// Broadcaster is a Source that holds the newest snapshot and hands it to
// subscribers. Publish replaces it. The zero value is not usable; use
// NewBroadcaster.
type Broadcaster struct {
	mu   sync.Mutex
	cur  *Snapshot
	subs map[chan *Snapshot]struct{}
}

// NewBroadcaster returns a Broadcaster holding an empty snapshot marked
// Initial.
func NewBroadcaster() *Broadcaster {
	return &Broadcaster{cur: &Snapshot{Services: map[string]*Service{}, Time: time.Now(), Initial: true}, subs: map[chan *Snapshot]struct{}{}}
}

// Current returns the newest snapshot.
func (b *Broadcaster) Current() *Snapshot {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cur
}

// Publish makes s the current snapshot and offers it to every subscriber.
// s must not be modified afterwards.
func (b *Broadcaster) Publish(s *Snapshot) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cur = s
	for ch := range b.subs {
		offer(ch, s)
	}
}

// offer puts s in a one-slot channel, replacing an unread older snapshot.
func offer(ch chan *Snapshot, s *Snapshot) {
	for {
		select {
		case ch <- s:
			return
		default:
		}
		select {
		case <-ch:
		default:
		}
	}
}

// Subscribe implements Source.
func (b *Broadcaster) Subscribe(ctx context.Context) <-chan *Snapshot {
	ch := make(chan *Snapshot, 1)
	b.mu.Lock()
	b.subs[ch] = struct{}{}
	ch <- b.cur
	b.mu.Unlock()
	out := make(chan *Snapshot)
	go func() {
		defer close(out)
		defer func() {
			b.mu.Lock()
			delete(b.subs, ch)
			b.mu.Unlock()
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case s := <-ch:
				select {
				case out <- s:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}
