package notify

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// received is one request a test receiver got.
type received struct {
	path   string
	header http.Header
	body   []byte
	at     time.Time
}

func (r received) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("receiver got non-JSON %q: %v", r.body, err)
	}
	return m
}

// receiver is a local webhook endpoint. answer decides the status of the
// n-th request (1-based); block, when set, holds requests until closed.
type receiver struct {
	*httptest.Server
	mu      sync.Mutex
	got     []received
	answer  func(n int) int
	block   chan struct{}
	release func()
	hit     chan struct{}
}

func newReceiver(t *testing.T, answer func(n int) int) *receiver {
	t.Helper()
	return startReceiver(t, answer, false)
}

// newBlockingReceiver holds every request until release is called.
func newBlockingReceiver(t *testing.T) *receiver {
	t.Helper()
	return startReceiver(t, nil, true)
}

func startReceiver(t *testing.T, answer func(n int) int, blocking bool) *receiver {
	t.Helper()
	r := &receiver{answer: answer, hit: make(chan struct{}, 1024), release: func() {}}
	if blocking {
		r.block = make(chan struct{})
		r.release = sync.OnceFunc(func() { close(r.block) })
	}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got = append(r.got, received{path: req.URL.Path, header: req.Header.Clone(), body: b, at: time.Now()})
		n := len(r.got)
		r.mu.Unlock()
		r.hit <- struct{}{}
		if r.block != nil {
			select {
			case <-r.block:
			case <-req.Context().Done():
				return
			}
		}
		code := http.StatusOK
		if r.answer != nil {
			code = r.answer(n)
		}
		w.WriteHeader(code)
		io.WriteString(w, http.StatusText(code))
	}))
	t.Cleanup(func() { r.release(); r.Close() })
	return r
}

func (r *receiver) requests() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

// waitRequests waits until the receiver has n requests.
func (r *receiver) waitRequests(t *testing.T, n int, within time.Duration) []received {
	t.Helper()
	deadline := time.After(within)
	for {
		if got := r.requests(); len(got) >= n {
			return got
		}
		select {
		case <-r.hit:
		case <-deadline:
			t.Fatalf("receiver got %d requests within %s, want %d", len(r.requests()), within, n)
		}
	}
}

type env struct {
	ctx   context.Context
	store *store.Store
	m     *Manager
	reg   *prometheus.Registry
}

// fastRetry keeps retry tests short.
var fastRetry = Retry{Attempts: 3, Base: 100 * time.Millisecond, Max: 400 * time.Millisecond, Timeout: 3 * time.Second}

// newEnv starts a Manager over a real etcd with a "default" namespace
// whose policy allows private targets or not. Receivers in these tests
// listen on loopback, which is exactly what a namespace may not reach
// unless a cluster admin allows it.
func newEnv(t *testing.T, allowPrivate bool, configure func(*Manager)) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := storetest.New(t)
	ns := &v1.Namespace{TypeMeta: v1.TypeMeta{Kind: "Namespace"}, Metadata: v1.ObjectMeta{Name: "default"}}
	if allowPrivate {
		ns.Spec.Policy = &v1.Policy{AllowPrivateTargets: true}
	}
	if err := s.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cancel)
	reg := prometheus.NewRegistry()
	m, _ := startManager(t, s, reg, configure)
	return &env{ctx: ctx, store: s, m: m, reg: reg}
}

// startManager runs a Manager over s until stop is called or the test
// ends, and waits for its informers to sync.
func startManager(t *testing.T, s *store.Store, reg prometheus.Registerer, configure func(*Manager)) (m *Manager, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	m = &Manager{Store: s, Log: slog.New(slog.DiscardHandler), Metrics: NewMetrics(reg), Retry: fastRetry, ClusterURL: "https://gantry.test:7443"}
	if configure != nil {
		configure(m)
	}
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	stop = sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(stop)
	m.init()
	for _, ch := range []<-chan struct{}{m.notifiers.Synced(), m.namespaces.Synced(), m.apps.Synced()} {
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatal("informers did not sync")
		}
	}
	return m, stop
}

func (e *env) notifier(t *testing.T, name, typ, url string, events ...string) *v1.Notifier {
	t.Helper()
	n := &v1.Notifier{TypeMeta: v1.TypeMeta{Kind: "Notifier"}, Metadata: v1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: v1.NotifierSpec{Type: typ, URL: url, Events: events}}
	if err := n.Validate(); len(err) > 0 {
		t.Fatalf("invalid notifier: %v", err)
	}
	if err := e.store.Create(e.ctx, n); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the manager sees notifier "+name, func() bool { _, ok := e.m.notifiers.Get("default", name); return ok })
	return n
}

func (e *env) status(t *testing.T, name string) v1.NotifierStatus {
	t.Helper()
	n, err := store.Get[*v1.Notifier](e.ctx, e.store, "default", name)
	if err != nil {
		t.Fatal(err)
	}
	return n.Status
}

func (e *env) count(typ, result string) float64 {
	var m dto.Metric
	if err := e.m.Metrics.Notifications.WithLabelValues(typ, result).Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func alert(status, text string) Message {
	return Message{Kind: KindAlert, Status: status, Rule: "crashloop", Condition: "restarts", Severity: "critical", App: "web", Message: text}
}

func TestSlackReceiverGetsFiringThenResolved(t *testing.T) {
	e := newEnv(t, true, nil)
	rcv := newReceiver(t, nil)
	e.notifier(t, "chat", v1.NotifierSlack, rcv.URL+"/services/T0/B0/xyz")

	e.m.Send(e.ctx, "default", nil, alert(StatusFiring, "instance web-1 restarted 4 times in 5m0s"))
	e.m.Send(e.ctx, "default", nil, alert(StatusResolved, "restarts no longer increase"))
	got := rcv.waitRequests(t, 2, 5*time.Second)

	for i, want := range []string{"[FIRING] default/crashloop", "[RESOLVED] default/crashloop"} {
		p := got[i].json(t)
		text, _ := p["text"].(string)
		if !strings.Contains(text, want) {
			t.Errorf("request %d text = %q, want it to contain %q", i, text, want)
		}
		if got[i].header.Get("Content-Type") != "application/json" || got[i].header.Get("X-Gantry-Delivery") == "" {
			t.Errorf("request %d headers = %v", i, got[i].header)
		}
		if got[i].path != "/services/T0/B0/xyz" {
			t.Errorf("request %d path = %s", i, got[i].path)
		}
	}
	eventually(t, "status counts two deliveries", func() bool { return e.status(t, "chat").Delivered == 2 })
	if st := e.status(t, "chat"); st.LastDelivery == nil || st.LastError != "" || st.Failed != 0 {
		t.Errorf("status = %+v", st)
	}
	if c := e.count("slack", ResultDelivered); c != 2 {
		t.Errorf("delivered counter = %v, want 2", c)
	}
}

func TestWebhookDeliveryCarriesTheJSONSchemaAndHeaders(t *testing.T) {
	e := newEnv(t, true, nil)
	rcv := newReceiver(t, nil)
	n := e.notifier(t, "hook", v1.NotifierWebhook, rcv.URL+"/hook")
	n.Spec.Headers = map[string]string{"Authorization": "Bearer abc"}
	if _, err := store.Mutate(e.ctx, e.store, "default", "hook", func(x *v1.Notifier) error { x.Spec.Headers = n.Spec.Headers; return nil }); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the manager sees the headers", func() bool {
		x, _ := e.m.notifiers.Get("default", "hook")
		return x.Spec.Headers["Authorization"] != ""
	})
	e.m.Send(e.ctx, "default", nil, alert(StatusFiring, "boom"))
	r := rcv.waitRequests(t, 1, 5*time.Second)[0]
	p := r.json(t)
	for k, want := range map[string]any{"version": "1", "kind": "alert", "status": "firing", "namespace": "default", "rule": "crashloop", "app": "web", "message": "boom", "cluster": "https://gantry.test:7443"} {
		if p[k] != want {
			t.Errorf("%s = %v, want %v", k, p[k], want)
		}
	}
	if r.header.Get("Authorization") != "Bearer abc" || r.header.Get("X-Gantry-Delivery") != p["id"] || r.header.Get("X-Gantry-Event") != "alert/firing" {
		t.Errorf("headers = %v", r.header)
	}
}

func TestFailingEndpointIsRetriedWithBackoffThenGivenUp(t *testing.T) {
	e := newEnv(t, true, nil)
	rcv := newReceiver(t, func(int) int { return http.StatusInternalServerError })
	e.notifier(t, "down", v1.NotifierWebhook, rcv.URL)

	e.m.Send(e.ctx, "default", nil, alert(StatusFiring, "x"))
	got := rcv.waitRequests(t, 3, 10*time.Second)
	// Backoff doubles from Base and is jittered to between half and all
	// of it: at least 50 ms, then at least 100 ms.
	if d := got[1].at.Sub(got[0].at); d < fastRetry.Base/2 {
		t.Errorf("first retry after %s, want at least %s", d, fastRetry.Base/2)
	}
	if d := got[2].at.Sub(got[1].at); d < fastRetry.Base {
		t.Errorf("second retry after %s, want at least %s (backoff doubles)", d, fastRetry.Base)
	}
	eventually(t, "the failure is recorded", func() bool { return e.status(t, "down").Failed == 1 })
	st := e.status(t, "down")
	if !strings.Contains(st.LastError, "500") || !strings.Contains(st.LastError, "after 3 attempts") {
		t.Errorf("lastError = %q", st.LastError)
	}
	time.Sleep(fastRetry.Max) // no fourth attempt
	if n := len(rcv.requests()); n != 3 {
		t.Errorf("endpoint got %d attempts, want 3", n)
	}
	if r, f := e.count("webhook", ResultRetried), e.count("webhook", ResultFailed); r != 2 || f != 1 {
		t.Errorf("retried=%v failed=%v, want 2 and 1", r, f)
	}
}

func TestRecoveringEndpointGetsTheMessageOnARetry(t *testing.T) {
	e := newEnv(t, true, nil)
	rcv := newReceiver(t, func(n int) int {
		if n < 3 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	e.notifier(t, "flaky", v1.NotifierSlack, rcv.URL)
	e.m.Send(e.ctx, "default", nil, alert(StatusFiring, "x"))
	got := rcv.waitRequests(t, 3, 10*time.Second)
	if got[0].header.Get("X-Gantry-Delivery") != got[2].header.Get("X-Gantry-Delivery") {
		t.Error("a retry carries a different delivery ID")
	}
	eventually(t, "the delivery is recorded", func() bool { return e.status(t, "flaky").Delivered == 1 })
	if st := e.status(t, "flaky"); st.Failed != 0 || st.LastError != "" {
		t.Errorf("status = %+v", st)
	}
}

func TestClientErrorsAreNotRetried(t *testing.T) {
	e := newEnv(t, true, nil)
	rcv := newReceiver(t, func(int) int { return http.StatusBadRequest })
	e.notifier(t, "bad", v1.NotifierSlack, rcv.URL)
	e.m.Send(e.ctx, "default", nil, alert(StatusFiring, "x"))
	eventually(t, "the failure is recorded", func() bool { return e.status(t, "bad").Failed == 1 })
	if n := len(rcv.requests()); n != 1 {
		t.Errorf("got %d attempts for a 400, want 1", n)
	}
	if st := e.status(t, "bad"); !strings.Contains(st.LastError, "400") {
		t.Errorf("lastError = %q", st.LastError)
	}
}

// closedPort returns a loopback URL nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + "/hook"
}

func TestDeadEndpointsBlockNeitherSendNorOtherNotifiers(t *testing.T) {
	e := newEnv(t, true, func(m *Manager) {
		m.Retry = Retry{Attempts: 100, Base: 200 * time.Millisecond, Max: time.Second, Timeout: 30 * time.Second}
	})
	hang := newBlockingReceiver(t)
	ok := newReceiver(t, nil)
	e.notifier(t, "hanging", v1.NotifierWebhook, hang.URL)
	e.notifier(t, "refusing", v1.NotifierWebhook, closedPort(t))
	e.notifier(t, "healthy", v1.NotifierSlack, ok.URL)

	const n = 20
	start := time.Now()
	for i := range n {
		e.m.Send(e.ctx, "default", nil, alert(StatusFiring, "message "+string(rune('a'+i))))
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Errorf("%d sends took %s; Send must not wait for delivery", n, d)
	}
	got := ok.waitRequests(t, n, 5*time.Second)
	for i, r := range got {
		if text := r.json(t)["text"].(string); !strings.HasSuffix(text, "message "+string(rune('a'+i))) {
			t.Errorf("healthy notifier got %q as message %d: out of order", text, i)
		}
	}
	if len(hang.requests()) != 1 {
		t.Errorf("hanging endpoint got %d requests, want the 1 still in flight", len(hang.requests()))
	}
	eventually(t, "the refusing endpoint is being retried", func() bool { return e.count("webhook", ResultRetried) >= 2 })
}

func TestAFullQueueDropsItsOldestMessages(t *testing.T) {
	e := newEnv(t, true, func(m *Manager) { m.QueueSize = 4 })
	rcv := newBlockingReceiver(t)
	e.notifier(t, "slow", v1.NotifierWebhook, rcv.URL)

	e.m.Send(e.ctx, "default", nil, alert(StatusFiring, "m0"))
	rcv.waitRequests(t, 1, 5*time.Second) // m0 is in flight
	for i := 1; i <= 9; i++ {
		e.m.Send(e.ctx, "default", nil, alert(StatusFiring, "m"+string(rune('0'+i))))
	}
	eventually(t, "five messages are dropped", func() bool { return e.count("webhook", ResultDropped) == 5 })
	rcv.release()
	got := rcv.waitRequests(t, 5, 5*time.Second)
	var texts []string
	for _, r := range got {
		texts = append(texts, r.json(t)["message"].(string))
	}
	if strings.Join(texts, ",") != "m0,m6,m7,m8,m9" {
		t.Errorf("delivered %v, want m0 and the newest four", texts)
	}
}

func TestPrivateTargetsAreRefusedUnlessTheNamespaceAllowsThem(t *testing.T) {
	e := newEnv(t, false, nil)
	rcv := newReceiver(t, nil)
	n := e.notifier(t, "local", v1.NotifierSlack, rcv.URL+"/services/SECRET")

	e.m.Send(e.ctx, "default", nil, alert(StatusFiring, "x"))
	eventually(t, "the refusal is recorded", func() bool { return e.status(t, "local").Failed == 1 })
	st := e.status(t, "local")
	if !strings.Contains(st.LastError, "loopback") || strings.Contains(st.LastError, "SECRET") {
		t.Errorf("lastError = %q, want a loopback refusal without the URL path", st.LastError)
	}
	if got := len(rcv.requests()); got != 0 {
		t.Fatalf("the loopback receiver got %d requests", got)
	}
	if c := e.count("slack", ResultRefused); c != 1 {
		t.Errorf("refused counter = %v", c)
	}

	t.Run("test deliveries are refused for private, link-local and loopback targets", func(t *testing.T) {
		for _, u := range []string{rcv.URL, "http://localhost:1/hook", "http://169.254.169.254/latest/meta-data", "http://10.11.12.13:9/hook"} {
			x := *n
			x.Spec.URL = u
			res := e.m.Test(e.ctx, &x)
			if res.Delivered || !res.Refused {
				t.Errorf("Test(%s) = %+v, want refused", u, res)
			}
		}
		if got := len(rcv.requests()); got != 0 {
			t.Fatalf("the loopback receiver got %d requests", got)
		}
	})

	t.Run("an admin's allowPrivateTargets lets them through", func(t *testing.T) {
		if _, err := store.Mutate(e.ctx, e.store, "", "default", func(ns *v1.Namespace) error {
			ns.Spec.Policy = &v1.Policy{AllowPrivateTargets: true}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		res := e.m.Test(e.ctx, n)
		if !res.Delivered || res.StatusCode != 200 || res.Target != rcv.URL+"/…" {
			t.Fatalf("Test = %+v, want delivered", res)
		}
		eventually(t, "the manager sees the policy", func() bool { return e.m.allowPrivate("default") })
		e.m.Send(e.ctx, "default", nil, alert(StatusFiring, "y"))
		got := rcv.waitRequests(t, 2, 5*time.Second)
		if p := got[0].json(t); p["text"] == nil || !strings.Contains(p["text"].(string), "test notification") {
			t.Errorf("first request = %s, want the test message", got[0].body)
		}
	})
}

func TestURLFromASecretIsUsedAndNeverShown(t *testing.T) {
	rcv := newReceiver(t, func(int) int { return http.StatusInternalServerError })
	const secretPath = "/services/T000/B000/SECRETTOKEN"
	e := newEnv(t, true, func(m *Manager) {
		m.Secrets = func(ctx context.Context, ns string, ref v1.SecretRef) (string, error) {
			if ns == "default" && ref.Name == "slack" && ref.Key == "url" {
				return rcv.URL + secretPath + "\n", nil
			}
			return "", v1.ErrNotFound
		}
	})
	n := &v1.Notifier{TypeMeta: v1.TypeMeta{Kind: "Notifier"}, Metadata: v1.ObjectMeta{Name: "chat", Namespace: "default"},
		Spec: v1.NotifierSpec{Type: v1.NotifierSlack, URLFrom: &v1.SecretRef{Name: "slack", Key: "url"}}}
	res := e.m.Test(e.ctx, n)
	if res.Delivered || res.StatusCode != 500 {
		t.Fatalf("Test = %+v, want a 500", res)
	}
	if got := rcv.requests(); len(got) != 1 || got[0].path != secretPath {
		t.Fatalf("receiver got %+v, want one request to the secret's path", got)
	}
	b, _ := json.Marshal(res)
	if strings.Contains(string(b), "SECRETTOKEN") {
		t.Fatalf("test result shows the secret URL: %s", b)
	}

	n.Spec.URLFrom.Key = "missing"
	res = e.m.Test(e.ctx, n)
	if res.Delivered || !strings.Contains(res.Error, "secret slack key missing") {
		t.Fatalf("Test with a missing key = %+v", res)
	}
}

func TestDeployEventsReachNotifiersThatWantDeploys(t *testing.T) {
	e := newEnv(t, true, nil)
	all, deploys, alertsOnly := newReceiver(t, nil), newReceiver(t, nil), newReceiver(t, nil)
	e.notifier(t, "all", v1.NotifierWebhook, all.URL)
	e.notifier(t, "deploys", v1.NotifierWebhook, deploys.URL, "deploys")
	e.notifier(t, "alerts", v1.NotifierWebhook, alertsOnly.URL, "alerts")

	// An event recorded in this process: seen through Recorder.Listen,
	// and a moment later through the watch, once it is stored.
	ev := &v1.Event{TypeMeta: v1.TypeMeta{Kind: "Event"}, Metadata: v1.ObjectMeta{Name: "web.1.a", Namespace: "default", Labels: map[string]string{v1.LabelApp: "web"}},
		Type: v1.EventNormal, Reason: "RolloutComplete", Message: "revision 2 is running with 3/3 instances ready", Object: v1.ObjectRef{Kind: "App", Name: "web"}, Time: time.Now()}
	e.m.ObserveEvent(ev)
	if err := e.store.Create(e.ctx, ev); err != nil {
		t.Fatal(err)
	}
	// An event another server recorded: seen through the watch only.
	other := &v1.Event{TypeMeta: v1.TypeMeta{Kind: "Event"}, Metadata: v1.ObjectMeta{Name: "web.2.b", Namespace: "default"},
		Type: v1.EventWarning, Reason: "RolledBack", Message: "rolled back from revision 3", Object: v1.ObjectRef{Kind: "App", Name: "web"}, Time: time.Now()}
	if err := e.store.Create(e.ctx, other); err != nil {
		t.Fatal(err)
	}
	// Not a deploy event.
	e.m.ObserveEvent(&v1.Event{Metadata: v1.ObjectMeta{Name: "web-x.3.c", Namespace: "default"}, Reason: "BackOff", Object: v1.ObjectRef{Kind: "Instance", Name: "web-x"}})
	// A new App starts its first rollout.
	app := &v1.App{TypeMeta: v1.TypeMeta{Kind: "App"}, Metadata: v1.ObjectMeta{Name: "api", Namespace: "default"}}
	app.Spec.Image = "api:v1"
	now := time.Now().UTC()
	app.Status = v1.AppStatus{Revision: 1, Phase: v1.AppProgressing, RolloutStarted: &now}
	if err := e.store.Create(e.ctx, app); err != nil {
		t.Fatal(err)
	}

	want := []string{"deploy/succeeded/web", "deploy/rolled-back/web", "deploy/started/api"}
	for name, r := range map[string]*receiver{"all": all, "deploys": deploys} {
		got := r.waitRequests(t, 3, 10*time.Second)
		var seen []string
		for _, g := range got {
			p := g.json(t)
			seen = append(seen, p["kind"].(string)+"/"+p["status"].(string)+"/"+p["app"].(string))
		}
		for _, w := range want {
			if !strings.Contains(strings.Join(seen, " "), w) {
				t.Errorf("notifier %s got %v, want %s among them", name, seen, w)
			}
		}
	}
	// Each notifier's queue is ordered: once an alert sent now arrives,
	// anything sent before it has arrived too.
	e.m.Send(e.ctx, "default", nil, alert(StatusFiring, "barrier"))
	all.waitRequests(t, 4, 5*time.Second)
	if got := alertsOnly.waitRequests(t, 1, 5*time.Second); len(got) != 1 || got[0].json(t)["kind"] != "alert" {
		t.Errorf("the alerts-only notifier got %d requests, want only the alert", len(got))
	}
	if got := all.requests(); len(got) != 4 {
		t.Errorf("the event seen twice was sent %d times in all", len(got))
	}

	t.Run("an automatic rollback is announced as failed and rolled back, not as a new deploy", func(t *testing.T) {
		e.m.ObserveEvent(&v1.Event{Metadata: v1.ObjectMeta{Name: "api.4.d", Namespace: "default"}, Reason: "ProgressDeadlineExceeded",
			Message: "revision 2 made no progress for 1m0s; rolling back to revision 1", Object: v1.ObjectRef{Kind: "App", Name: "api"}, Time: time.Now()})
		// The rollout controller writes the rollback's revision whole:
		// stable, phase RolledBack, with its record.
		a, err := store.Mutate(e.ctx, e.store, "default", "api", func(a *v1.App) error {
			a.Status.Revision, a.Status.StableRevision, a.Status.Phase = 3, 3, v1.AppRolledBack
			a.Status.RolledBack = &v1.RollbackRecord{From: 2, To: 1, Revision: 3, Time: time.Now(), Reason: "no progress"}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, "the manager sees the rollback revision", func() bool {
			x, ok := e.m.apps.Get("default", "api")
			return ok && x.Metadata.Revision >= a.Metadata.Revision
		})
		e.m.Send(e.ctx, "default", nil, alert(StatusFiring, "barrier 2"))
		got := all.waitRequests(t, 6, 5*time.Second)
		var seen []string
		for _, g := range got[4:] {
			p := g.json(t)
			seen = append(seen, p["kind"].(string)+"/"+p["status"].(string))
		}
		if strings.Join(seen, " ") != "deploy/failed alert/firing" {
			t.Errorf("after the failure the notifier got %v, want the failure and then the barrier", seen)
		}

		// The user's next deploy, moments later, is news again.
		if _, err := store.Mutate(e.ctx, e.store, "default", "api", func(a *v1.App) error {
			a.Status.Revision, a.Status.Phase = 4, v1.AppProgressing
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		got = all.waitRequests(t, 7, 5*time.Second)
		if p := got[6].json(t); p["kind"] != "deploy" || p["status"] != "started" || p["revision"] != float64(4) {
			t.Errorf("a deploy right after a rollback: got %s", got[6].body)
		}
	})

	t.Run("a notifier named explicitly gets alerts whatever its events", func(t *testing.T) {
		e.m.Send(e.ctx, "default", []string{"deploys"}, alert(StatusResolved, "named"))
		got := deploys.waitRequests(t, 6, 5*time.Second)
		if got[5].json(t)["message"] != "named" {
			t.Errorf("got %s", got[5].body)
		}
	})
}

func TestBackoffGrowsToItsCapAndHonoursRetryAfter(t *testing.T) {
	m := &Manager{Retry: Retry{Attempts: 10, Base: time.Second, Max: 8 * time.Second}}
	for attempt, limit := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 9: 8 * time.Second} {
		for range 50 {
			d := m.backoff(attempt, 0)
			if d < limit/2 || d > limit {
				t.Fatalf("backoff(%d) = %s, want within [%s, %s]", attempt, d, limit/2, limit)
			}
		}
	}
	if d := m.backoff(1, 5*time.Second); d != 5*time.Second {
		t.Errorf("Retry-After 5s gave %s", d)
	}
	if d := m.backoff(1, time.Hour); d != 8*time.Second {
		t.Errorf("Retry-After 1h gave %s, want the cap", d)
	}
	if d := parseRetryAfter("3", time.Now()); d != 3*time.Second {
		t.Errorf("parseRetryAfter(3) = %s", d)
	}
}

func TestRedactKeepsOnlySchemeAndHost(t *testing.T) {
	m := &Manager{}
	n := &v1.Notifier{Metadata: v1.ObjectMeta{Name: "x"}, Spec: v1.NotifierSpec{URL: "https://user:pw@hooks.example.com/services/T/B/tok?x=1"}}
	u, err := m.target(context.Background(), n)
	if err != nil {
		t.Fatal(err)
	}
	if got := Redact(u); got != "https://hooks.example.com/…" {
		t.Errorf("Redact = %q", got)
	}
	n.Spec.URL = "ftp://x"
	if _, err := m.target(context.Background(), n); !errors.Is(err, v1.ErrInvalid) || strings.Contains(err.Error(), "ftp") {
		t.Errorf("err = %v", err)
	}
}
