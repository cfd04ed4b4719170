package notify

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

func TestReadingTheURLSecretFailsForGoodOnlyWhenItCannotSucceedLater(t *testing.T) {
	secretErr := func(err error) SecretFunc {
		return func(context.Context, string, v1.SecretRef) (string, error) { return "", err }
	}
	tests := []struct {
		name      string
		secrets   SecretFunc
		retryable bool
		errHas    string
	}{
		{"an unavailable store is retried", secretErr(fmt.Errorf("%w: etcd: connection refused", v1.ErrUnavailable)), true, "unavailable"},
		{"a store that does not answer in time is retried", secretErr(context.DeadlineExceeded), true, "deadline exceeded"},
		{"a store that asks to slow down is retried", secretErr(fmt.Errorf("%w: etcd", v1.ErrTooManyRequest)), true, "too many requests"},
		{"a missing key fails for good and says what to fix", secretErr(fmt.Errorf("%w: secret slack has no key \"url\"", v1.ErrNotFound)), false,
			"notifier chat reads its URL from secret slack key url, which does not exist: not found: secret slack has no key \"url\"; add the key to the secret or change urlFrom"},
		{"a value that is not a URL fails for good", func(context.Context, string, v1.SecretRef) (string, error) { return "not a url", nil }, false, "no valid http or https URL"},
		{"a server that cannot read secrets fails for good", nil, false, "cannot read secrets"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &Manager{Secrets: tt.secrets}
			m.init()
			n := &v1.Notifier{Metadata: v1.ObjectMeta{Name: "chat", Namespace: "default"},
				Spec: v1.NotifierSpec{Type: v1.NotifierSlack, URLFrom: &v1.SecretRef{Name: "slack", Key: "url"}}}
			msg := alert(StatusFiring, "x")
			o := m.attempt(context.Background(), n, &msg, true)
			if o.err == nil || !strings.Contains(o.err.Error(), tt.errHas) {
				t.Errorf("err = %v, want it to contain %q", o.err, tt.errHas)
			}
			if o.retryable != tt.retryable {
				t.Errorf("retryable = %v, want %v", o.retryable, tt.retryable)
			}
		})
	}
}

func TestAnUnavailableURLSecretIsRetriedUntilItCanBeRead(t *testing.T) {
	rcv := newReceiver(t, nil)
	var reads atomic.Int32
	e := newEnv(t, true, func(m *Manager) {
		m.Secrets = func(ctx context.Context, ns string, ref v1.SecretRef) (string, error) {
			if reads.Add(1) <= 2 {
				return "", fmt.Errorf("%w: etcd: context deadline exceeded", v1.ErrUnavailable)
			}
			return rcv.URL + "/hook", nil
		}
	})
	n := &v1.Notifier{TypeMeta: v1.TypeMeta{Kind: "Notifier"}, Metadata: v1.ObjectMeta{Name: "chat", Namespace: "default"},
		Spec: v1.NotifierSpec{Type: v1.NotifierWebhook, URLFrom: &v1.SecretRef{Name: "hook", Key: "url"}}}
	if err := e.store.Create(e.ctx, n); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the manager sees the notifier", func() bool { _, ok := e.m.notifiers.Get("default", "chat"); return ok })
	e.m.Send(e.ctx, "default", nil, alert(StatusFiring, "x"))
	rcv.waitRequests(t, 1, 10*time.Second)
	eventually(t, "the delivery is recorded", func() bool { return e.status(t, "chat").Delivered == 1 })
	if st := e.status(t, "chat"); st.Failed != 0 || st.LastError != "" {
		t.Errorf("status = %+v, want no failure", st)
	}
	if r := e.count("webhook", ResultRetried); r != 2 {
		t.Errorf("retried = %v, want 2", r)
	}
}
