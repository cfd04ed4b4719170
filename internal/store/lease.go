package store

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/keylock"
)

// Leases are etcd leases: keys attached to one vanish when it is not kept
// alive within its TTL. Gantry uses them for node heartbeats and to expire
// events.

// Heartbeat records that the named holder (a node) is alive for ttl. The
// first call grants a lease and attaches the key PREFIX/leases/KIND/NAME to
// it; later calls keep that lease alive. When heartbeats stop, etcd deletes
// the key after ttl, which WatchHeartbeats reports.
type Heartbeats struct {
	s    *Store
	kind string
	ttl  time.Duration

	mu     sync.Mutex
	leases map[string]clientv3.LeaseID
	// granting holds a lock per holder for Beat's grant-and-put: two
	// at once (a register and a heartbeat, a retried request) would
	// each grant a lease, and the loser's revoke of the other's lease
	// would delete the key the winner had just put.
	granting keylock.Locks // by name
}

// Heartbeats returns the heartbeat registry for a kind of holder.
func (s *Store) Heartbeats(kind string, ttl time.Duration) *Heartbeats {
	return &Heartbeats{s: s, kind: kind, ttl: ttl, leases: map[string]clientv3.LeaseID{}}
}

func (h *Heartbeats) key(name string) string { return h.s.prefix + "leases/" + h.kind + "/" + name }

// Beat renews name's lease, creating it if needed.
func (h *Heartbeats) Beat(ctx context.Context, name string) error {
	tried := h.lease(name)
	if tried != 0 && h.keepAlive(ctx, tried) {
		return nil
	}
	defer h.granting.Lock(name)()
	if cur := h.lease(name); cur != 0 && cur != tried && h.keepAlive(ctx, cur) {
		return nil // another Beat granted one meanwhile
	}
	ttl := int64(h.ttl.Round(time.Second) / time.Second)
	if ttl < 1 {
		ttl = 1
	}
	g, err := h.s.cli.Grant(ctx, ttl)
	if err != nil {
		return fmt.Errorf("grant heartbeat lease for %s: %w", name, unavailable(err))
	}
	if _, err := h.s.cli.Put(ctx, h.key(name), time.Now().UTC().Format(time.RFC3339Nano), clientv3.WithLease(g.ID)); err != nil {
		return fmt.Errorf("heartbeat %s: %w", name, unavailable(err))
	}
	h.mu.Lock()
	if old, ok := h.leases[name]; ok && old != g.ID {
		go h.s.cli.Revoke(context.WithoutCancel(ctx), old)
	}
	h.leases[name] = g.ID
	h.mu.Unlock()
	return nil
}

// lease is the lease on record for name, 0 for none.
func (h *Heartbeats) lease(name string) clientv3.LeaseID {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.leases[name]
}

// keepAlive renews lease id and reports whether that worked: false when
// it expired (the holder was silent too long) or this server restarted.
func (h *Heartbeats) keepAlive(ctx context.Context, id clientv3.LeaseID) bool {
	_, err := h.s.cli.KeepAliveOnce(ctx, id)
	return err == nil
}

// Alive reports which holders have a live heartbeat.
func (h *Heartbeats) Alive(ctx context.Context) (map[string]bool, int64, error) {
	resp, err := h.s.cli.Get(ctx, h.key(""), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, 0, unavailable(err)
	}
	out := map[string]bool{}
	for _, kv := range resp.Kvs {
		out[strings.TrimPrefix(string(kv.Key), h.key(""))] = true
	}
	return out, resp.Header.Revision, nil
}

// HeartbeatEvent says a holder became alive or its lease expired.
type HeartbeatEvent struct {
	Name     string
	Alive    bool
	Revision int64
	Err      error
}

// Watch reports heartbeat leases appearing and expiring from rev on.
func (h *Heartbeats) Watch(ctx context.Context, rev int64) <-chan HeartbeatEvent {
	out := make(chan HeartbeatEvent, 16)
	opts := []clientv3.OpOption{clientv3.WithPrefix()}
	if rev > 0 {
		opts = append(opts, clientv3.WithRev(rev))
	}
	wch := h.s.cli.Watch(clientv3.WithRequireLeader(ctx), h.key(""), opts...)
	go func() {
		defer close(out)
		for resp := range wch {
			if err := resp.Err(); err != nil {
				select {
				case out <- HeartbeatEvent{Err: fmt.Errorf("watch heartbeats: %w", unavailable(err))}:
				case <-ctx.Done():
				}
				return
			}
			for _, ev := range resp.Events {
				name := strings.TrimPrefix(string(ev.Kv.Key), h.key(""))
				// A put on an existing key is a renewal with a new
				// lease: still alive.
				e := HeartbeatEvent{Name: name, Alive: ev.Type == clientv3.EventTypePut, Revision: ev.Kv.ModRevision}
				select {
				case out <- e:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

// Forget drops name's lease now, as when a node is deleted.
func (h *Heartbeats) Forget(ctx context.Context, name string) error {
	h.mu.Lock()
	id, ok := h.leases[name]
	delete(h.leases, name)
	h.mu.Unlock()
	if ok {
		h.s.cli.Revoke(ctx, id)
	}
	_, err := h.s.cli.Delete(ctx, h.key(name))
	return unavailable0(err)
}

func unavailable0(err error) error {
	if err == nil {
		return nil
	}
	return unavailable(err)
}

// expiring hands out shared leases for objects that should disappear after
// a while (events), one lease per time bucket so that etcd does not track a
// lease per object.
type expiring struct {
	s      *Store
	ttl    time.Duration
	bucket time.Duration

	mu      sync.Mutex
	current clientv3.LeaseID
	until   time.Time
}

func (e *expiring) lease(ctx context.Context) (clientv3.LeaseID, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	if e.current != 0 && now.Before(e.until) {
		return e.current, nil
	}
	g, err := e.s.cli.Grant(ctx, int64((e.ttl+e.bucket)/time.Second))
	if err != nil {
		return 0, unavailable(err)
	}
	e.current, e.until = g.ID, now.Add(e.bucket)
	return e.current, nil
}

// CreateExpiring creates an object that etcd deletes on its own after
// roughly ttl (at most ttl + one minute).
func (s *Store) CreateExpiring(ctx context.Context, o v1.Object, ttl time.Duration) error {
	s.expMu.Lock()
	e, ok := s.exp[ttl]
	if !ok {
		if s.exp == nil {
			s.exp = map[time.Duration]*expiring{}
		}
		e = &expiring{s: s, ttl: ttl, bucket: time.Minute}
		s.exp[ttl] = e
	}
	s.expMu.Unlock()
	id, err := e.lease(ctx)
	if err != nil {
		return fmt.Errorf("lease for %s: %w", o.GetType().Kind, err)
	}
	return s.Create(ctx, o, clientv3.WithLease(id))
}
