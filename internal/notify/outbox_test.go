package notify

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	clientv3 "go.etcd.io/etcd/client/v3"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// pending returns the messages of the outbox entries of a notifier of
// "default", in creation order.
func pending(t *testing.T, s *store.Store, notifier string) []string {
	t.Helper()
	resp, err := s.Client().Get(context.Background(), outboxPrefix(s)+"default/"+notifier+"/",
		clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, kv := range resp.Kvs {
		var e outboxEntry
		if err := json.Unmarshal(kv.Value, &e); err != nil {
			t.Fatalf("outbox entry %s: %v", kv.Key, err)
		}
		texts = append(texts, e.Message.Message)
	}
	return texts
}

func counter(m *Manager, typ, result string) float64 {
	var d dto.Metric
	if err := m.Metrics.Notifications.WithLabelValues(typ, result).Write(&d); err != nil {
		panic(err)
	}
	return d.GetCounter().GetValue()
}

func createNotifier(t *testing.T, s *store.Store, name, url string) {
	t.Helper()
	n := &v1.Notifier{TypeMeta: v1.TypeMeta{Kind: "Notifier"}, Metadata: v1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: v1.NotifierSpec{Type: v1.NotifierWebhook, URL: url}}
	if err := s.Create(context.Background(), n); err != nil {
		t.Fatal(err)
	}
}

func TestPendingMessagesSurviveAManagerRestartAndAreDeliveredOnceInOrder(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	ns := &v1.Namespace{TypeMeta: v1.TypeMeta{Kind: "Namespace"}, Metadata: v1.ObjectMeta{Name: "default"}, Spec: v1.NamespaceSpec{Policy: &v1.Policy{AllowPrivateTargets: true}}}
	if err := s.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	// The first request fails; every later one succeeds.
	rcv := newReceiver(t, func(n int) int {
		if n == 1 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	createNotifier(t, s, "chat", rcv.URL)

	// The first manager's only attempt fails and it then waits a
	// minute: it is stopped with nothing in flight.
	m1, stop1 := startManager(t, s, nil, func(m *Manager) {
		m.Retry = Retry{Attempts: 10, Base: time.Minute, Max: time.Minute, Timeout: 3 * time.Second}
	})
	eventually(t, "the first manager sees the notifier", func() bool { _, ok := m1.notifiers.Get("default", "chat"); return ok })
	texts := []string{"m0", "m1", "m2", "m3", "m4"}
	for _, text := range texts {
		m1.Send(ctx, "default", nil, alert(StatusFiring, text))
	}
	eventually(t, "the first attempt failed and waits for its retry", func() bool { return counter(m1, "webhook", ResultRetried) == 1 })
	eventually(t, "all five are in the outbox", func() bool { return len(pending(t, s, "chat")) == len(texts) })
	stop1()
	if got := pending(t, s, "chat"); strings.Join(got, ",") != strings.Join(texts, ",") {
		t.Fatalf("outbox after the stop = %v, want %v", got, texts)
	}
	if n := len(rcv.requests()); n != 1 {
		t.Fatalf("receiver got %d requests before the restart, want 1", n)
	}

	m2, _ := startManager(t, s, nil, nil)
	rcv.waitRequests(t, 1+len(texts), 10*time.Second)
	eventually(t, "the outbox is empty", func() bool { return len(pending(t, s, "chat")) == 0 })
	// Anything sent again would come before a message sent now.
	m2.Send(ctx, "default", nil, alert(StatusFiring, "barrier"))
	got := rcv.waitRequests(t, 2+len(texts), 10*time.Second)
	eventually(t, "the deliveries are recorded", func() bool {
		n, err := store.Get[*v1.Notifier](ctx, s, "default", "chat")
		return err == nil && n.Status.Delivered == len(texts)+1
	})
	if n := len(rcv.requests()); n != 2+len(texts) {
		t.Errorf("receiver got %d requests, want %d: each message once after the restart", n, 2+len(texts))
	}
	var seen []string
	for _, r := range got[1:] {
		seen = append(seen, r.json(t)["message"].(string))
	}
	if want := strings.Join(append(texts, "barrier"), ","); strings.Join(seen, ",") != want {
		t.Errorf("after the restart the receiver got %v, want %s", seen, want)
	}
	if a, b := got[0].header.Get("X-Gantry-Delivery"), got[1].header.Get("X-Gantry-Delivery"); a == "" || a != b {
		t.Errorf("delivery ID before the restart %q, after %q: want the same", a, b)
	}
}

func TestTheOutboxKeepsAMessageUntilItIsSettled(t *testing.T) {
	e := newEnv(t, true, func(m *Manager) {
		m.Retry = Retry{Attempts: 1000, Base: 20 * time.Millisecond, Max: 50 * time.Millisecond, Timeout: 3 * time.Second}
	})
	tests := []struct {
		name     string
		code     int
		settle   func(t *testing.T, name string, rcv *receiver)
		wantDone func(st v1.NotifierStatus) bool
	}{
		{
			name:     "a delivered message leaves the outbox",
			code:     http.StatusOK,
			wantDone: func(st v1.NotifierStatus) bool { return st.Delivered == 1 },
		},
		{
			name:     "a message the endpoint rejects for good leaves the outbox",
			code:     http.StatusBadRequest,
			wantDone: func(st v1.NotifierStatus) bool { return st.Failed == 1 },
		},
		{
			name: "a message being retried stays until its notifier is deleted",
			code: http.StatusServiceUnavailable,
			settle: func(t *testing.T, name string, rcv *receiver) {
				rcv.waitRequests(t, 2, 10*time.Second)
				if got := pending(t, e.store, name); len(got) != 1 {
					t.Fatalf("outbox while retrying = %v, want the message", got)
				}
				if _, err := e.store.Delete(e.ctx, store.KindFor[*v1.Notifier](), "default", name, 0); err != nil {
					t.Fatal(err)
				}
			},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := "n" + string(rune('a'+i))
			rcv := newReceiver(t, func(int) int { return tt.code })
			e.notifier(t, name, v1.NotifierWebhook, rcv.URL)
			e.m.Send(e.ctx, "default", []string{name}, alert(StatusFiring, "x"))
			if tt.settle != nil {
				tt.settle(t, name, rcv)
			} else {
				eventually(t, "the outcome is recorded", func() bool { return tt.wantDone(e.status(t, name)) })
			}
			eventually(t, "the outbox is empty", func() bool { return len(pending(t, e.store, name)) == 0 })
		})
	}
}

func TestAFullQueueDropsItsOldestMessagesFromTheOutboxToo(t *testing.T) {
	e := newEnv(t, true, func(m *Manager) { m.QueueSize = 2 })
	rcv := newBlockingReceiver(t)
	e.notifier(t, "slow", v1.NotifierWebhook, rcv.URL)

	e.m.Send(e.ctx, "default", nil, alert(StatusFiring, "m0"))
	rcv.waitRequests(t, 1, 5*time.Second) // m0 is in flight
	for _, text := range []string{"m1", "m2", "m3", "m4", "m5"} {
		e.m.Send(e.ctx, "default", nil, alert(StatusFiring, text))
	}
	eventually(t, "three messages are dropped", func() bool { return e.count("webhook", ResultDropped) == 3 })
	eventually(t, "the outbox holds the one in flight and the newest two", func() bool {
		return strings.Join(pending(t, e.store, "slow"), ",") == "m0,m4,m5"
	})
	rcv.release()
	rcv.waitRequests(t, 3, 5*time.Second)
	eventually(t, "the outbox is empty", func() bool { return len(pending(t, e.store, "slow")) == 0 })
}
