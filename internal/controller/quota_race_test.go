package controller

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
	"github.com/gantry-dev/gantry/internal/apiserver"
	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/informer"
	"github.com/gantry-dev/gantry/internal/secrets/secretstest"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// The automatic rollback checks the quota (AdmitRollback) and writes the
// App under the namespace's quota lock, as an apply, a scale, `rollout
// undo` and the autoscaler do: an apply of another App made meanwhile
// waits, and is then measured against the rolled-back footprint.
func TestAutomaticRollbackHoldsTheQuotaLock(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := quotaStore(t, 2000)
	api, apply := serveAPI(ctx, t, s)
	const app = "kind: App\nname: a\nnamespace: q\nimage: x:%s\nresources: {cpu: %s}\nstrategy: {maxSurge: 0, maxUnavailable: 1}\n"
	if err := apply(fmt.Sprintf(app, "v1", "1000m")); err != nil {
		t.Fatal(err)
	}
	if err := apply(fmt.Sprintf(app, "v2", "500m")); err != nil {
		t.Fatal(err)
	}
	a, err := store.Get[*v1.App](ctx, s, "q", "a")
	if err != nil {
		t.Fatal(err)
	}
	a.Status.StableRevision = 1 // revision 2 is the failing one

	r := NewRollout(s, &eventLog{}, quiet, nil, nil)
	r.HoldQuota = api.HoldQuota
	applied := make(chan error, 1)
	r.Admit = func(ctx context.Context, a, prev *v1.App) error {
		err := api.AdmitRollback(ctx, a, prev)
		if err == nil {
			// Another App applied while the rollback is between its
			// check and its write: under the quota lock it would wait.
			go func() { applied <- apply("kind: App\nname: b\nnamespace: q\nimage: y:v1\nresources: {cpu: 1500m}\n") }()
			select {
			case <-applied:
				applied <- nil
			case <-time.After(2 * time.Second):
			}
		}
		return err
	}
	if err := r.deadlineExceeded(ctx, a, nil, time.Minute, ""); err != nil {
		t.Fatal(err)
	}
	<-applied
	all, _, err := store.List[*v1.App](ctx, s, store.ListOptions{Namespace: "q"})
	if err != nil {
		t.Fatal(err)
	}
	var cpu int64
	for _, x := range all {
		cpu += int64(x.Spec.Resources.CPU) * int64(x.DesiredReplicas())
	}
	if cpu > 2000 {
		t.Errorf("namespace q requests %dm CPU under a 2000m quota: the automatic rollback and an apply interleaved", cpu)
	}
}

// serveAPI serves an API server on s with an admin's token, and returns
// it with a function that applies a manifest through it.
func serveAPI(ctx context.Context, t *testing.T, s *store.Store) (*apiserver.Server, func(doc string) error) {
	t.Helper()
	tok, err := auth.Bootstrap(ctx, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	api := apiserver.New(apiserver.Config{AppsDomain: "localhost"}, s, &auth.Authenticator{Store: s}, &auth.Authorizer{Store: s},
		slog.New(slog.NewTextHandler(io.Discard, nil)), apiserver.WithSecrets(secretstest.Codec(t)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go api.Serve(ctx, ln, nil)
	c, err := client.New(client.Config{Server: "http://" + ln.Addr().String(), Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	return api, func(doc string) error {
		o, err := v1.DecodeManifest([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Apply(ctx, o)
		return err
	}
}

// quotaStore is a store holding namespace q with a CPU quota of cpu
// millicores.
func quotaStore(t *testing.T, cpu v1.CPU) *store.Store {
	t.Helper()
	s := storetest.New(t)
	ns := &v1.Namespace{TypeMeta: v1.TypeMeta{Kind: "Namespace"}, Metadata: v1.ObjectMeta{Name: "q"}}
	ns.Spec.Quota = &v1.Quota{CPU: cpu}
	if err := s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return s
}

type fixedRate float64

func (r fixedRate) RequestRate(ns, app string) float64 { return float64(r) }

// The autoscaler asks the quota about the App as its informer last saw
// it; an App changed since (an apply that raised its requests) is not
// scaled on that answer, but decided on afresh at the next pass.
func TestAutoscalerDecidesOnTheStoredApp(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := quotaStore(t, 2000)
	api := apiserver.New(apiserver.Config{AppsDomain: "localhost"}, s, &auth.Authenticator{Store: s}, &auth.Authorizer{Store: s},
		slog.New(slog.NewTextHandler(io.Discard, nil)), apiserver.WithSecrets(secretstest.Codec(t)))
	const doc = "kind: App\nname: a\nnamespace: q\nimage: x:v1\nresources: {cpu: %s}\nautoscale: {min: 1, max: 4, targetRequestsPerSecond: 1}\n"
	saveApp(t, s, decodeApp(t, fmt.Sprintf(doc, "500m")))
	stale, err := store.Get[*v1.App](ctx, s, "q", "a")
	if err != nil {
		t.Fatal(err)
	}
	stale.Status.StableRevision, stale.Status.Phase = stale.Status.Revision, v1.AppRunning // rolled out
	saveApp(t, s, decodeApp(t, fmt.Sprintf(doc, "1000m")))                                 // 1 x 1000m (+ surge) fits 2000m
	as := &Autoscaler{Store: s, Apps: informer.New[*v1.App](s, quiet), Requests: fixedRate(4), Quota: api.FitReplicas,
		HoldQuota: api.HoldQuota, Recorder: &eventLog{}, Log: quiet, Now: time.Now, Tolerance: 0.1,
		DownStabilization: time.Minute, recs: map[string][]recommendation{}}
	if err := as.evaluate(ctx, stale); err != nil {
		t.Fatal(err)
	}
	a, err := store.Get[*v1.App](ctx, s, "q", "a")
	if err != nil {
		t.Fatal(err)
	}
	if cpu := int64(a.Spec.Resources.CPU) * int64(a.DesiredReplicas()); cpu > 2000 {
		t.Errorf("autoscaler scaled app a to %d x %s = %dm CPU under a 2000m quota", a.DesiredReplicas(), a.Spec.Resources.CPU, cpu)
	}
}
