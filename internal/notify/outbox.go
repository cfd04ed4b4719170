package notify

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
)

// outboxTimeout bounds each outbox write.
const outboxTimeout = 5 * time.Second

// outboxPrefix is the key prefix of the outbox. The store keeps its
// prefix to itself; the key of a made-up cluster-scoped kind named
// "notify-outbox" is exactly "<prefix>notify-outbox/", and no real kind
// can be called that, as plurals end in "s".
func outboxPrefix(s *store.Store) string {
	return s.Key(&v1.KindInfo{Plural: "notify-outbox"}, "", "")
}

// outboxEntry is the stored form of one queued message.
type outboxEntry struct {
	Namespace string  `json:"namespace"`
	Notifier  string  `json:"notifier"`
	Message   Message `json:"message"`
}

// persist writes msg's outbox entry for n and returns its key. A
// failed write is logged and returns "": the message is still queued,
// in memory only.
func (m *Manager) persist(n *v1.Notifier, msg Message) string {
	b, err := json.Marshal(outboxEntry{Namespace: n.Metadata.Namespace, Notifier: n.Metadata.Name, Message: msg})
	if err != nil {
		m.Log.Warn("encode pending notification; it is kept in memory only", "ns", n.Metadata.Namespace, "notifier", n.Metadata.Name, "err", err)
		return ""
	}
	// Not the message ID as the entry's name: a message sent twice is
	// queued twice, and one copy's delivery must not remove the other's
	// entry.
	key := m.outbox + n.Metadata.Namespace + "/" + n.Metadata.Name + "/" + rand.Text()
	ctx, cancel := context.WithTimeout(context.Background(), outboxTimeout)
	defer cancel()
	if _, err := m.Store.Client().Put(ctx, key, string(b)); err != nil {
		m.Log.Warn("store pending notification; it is kept in memory only", "ns", n.Metadata.Namespace, "notifier", n.Metadata.Name, "kind", msg.Kind, "status", msg.Status, "err", err)
		return ""
	}
	return key
}

// unpersist deletes an outbox entry. It is done even as ctx ends (a
// message delivered during shutdown should not be sent again); a failed
// delete only means the message may be delivered twice.
func (m *Manager) unpersist(ctx context.Context, key string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), outboxTimeout)
	defer cancel()
	if _, err := m.Store.Client().Delete(ctx, key); err != nil {
		m.Log.Warn("delete settled notification from the outbox; it may be delivered again after a restart", "key", key, "err", err)
	}
}

// restore queues the outbox entries that an earlier run left, oldest
// first. Entries whose notifier is gone, or that cannot be read, are
// deleted.
func (m *Manager) restore(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, outboxTimeout)
	defer cancel()
	resp, err := m.Store.Client().Get(rctx, m.outbox, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil {
		return fmt.Errorf("list the notification outbox: %w", err)
	}
	restored := 0
	for _, kv := range resp.Kvs {
		key := string(kv.Key)
		var e outboxEntry
		if err := json.Unmarshal(kv.Value, &e); err != nil {
			m.Log.Warn("unreadable pending notification; deleting it", "key", key, "err", err)
			m.unpersist(ctx, key)
			continue
		}
		n, ok := m.notifiers.Get(e.Namespace, e.Notifier)
		if !ok {
			m.Metrics.count("", ResultDropped)
			m.Log.Info("notifier deleted; dropping its pending message", "ns", e.Namespace, "notifier", e.Notifier, "kind", e.Message.Kind, "status", e.Message.Status)
			m.unpersist(ctx, key)
			continue
		}
		if dropped := m.enqueue(n, item{msg: e.Message, key: key}); dropped != "" {
			m.unpersist(ctx, dropped)
		}
		restored++
	}
	if restored > 0 {
		m.Log.Info("queued notifications left pending by an earlier run", "count", restored)
	}
	return nil
}
