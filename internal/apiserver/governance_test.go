package apiserver_test

// Governance: who may deploy which image, who writes instance status,
// quotas under concurrent writes, what deleting a user or a namespace
// takes with it, per-container maximums, and whose samples a node may
// report.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
	"github.com/gantry-dev/gantry/internal/apiserver"
	"github.com/gantry-dev/gantry/internal/apiserver/apiservertest"
	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/discovery"
	"github.com/gantry-dev/gantry/internal/metrics"
	"github.com/gantry-dev/gantry/internal/store"
)

// govUser makes user name with role in ns (via the admin API) and
// returns a client with a fresh token of theirs.
func govUser(t *testing.T, ts *testServer, name, role, ns string) (*client.Client, string) {
	t.Helper()
	ctx := context.Background()
	admin := ts.client(t, ts.Token)
	for _, m := range []string{
		fmt.Sprintf("kind: User\nname: %s\n", name),
		fmt.Sprintf("kind: RoleBinding\nname: %s-%s\nuser: %s\nrole: %s\nnamespace: %s\n", name, ns, name, role, ns),
	} {
		o, err := v1.DecodeManifest([]byte(m))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := admin.Apply(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	_, tok, err := auth.CreateToken(ctx, ts.Store, v1.TokenSpec{User: name})
	if err != nil {
		t.Fatal(err)
	}
	return ts.client(t, tok), tok
}

func govNamespace(t *testing.T, ts *testServer, name string, quota *v1.Quota) {
	t.Helper()
	ns := &v1.Namespace{TypeMeta: v1.TypeMeta{Kind: "Namespace"}, Metadata: v1.ObjectMeta{Name: name}}
	ns.Spec.Quota = quota
	if err := ts.Store.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
}

// A developer of namespace "team" may not pull images of namespace
// "other" from the registry; deploying one must be refused too, or the
// node (whose credential pulls any namespace) fetches it for them and
// `gantry exec` hands them its contents.
func TestAppImageNeedsPullInItsNamespace(t *testing.T) {
	ts := &testServer{apiservertest.StartConfig(t, t.TempDir(), "127.0.0.1:0", apiserver.Config{AppsDomain: "localhost", Registry: "reg.local:5000"})}
	govNamespace(t, ts, "team", nil)
	govNamespace(t, ts, "other", nil)
	dev, _ := govUser(t, ts, "dev", "developer", "team")
	ctx := context.Background()

	z := &auth.Authorizer{Store: ts.Store}
	if err := z.Authorize(ctx, &auth.Identity{User: "dev"}, auth.Attributes{Verb: "pull", Resource: "images", Namespace: "other"}); err == nil {
		t.Fatal("setup: dev may pull images of namespace other")
	}
	for _, image := range []string{"other/payroll:v1", "reg.local:5000/other/payroll:v1"} {
		o, _ := v1.DecodeManifest([]byte("kind: App\nname: peek\nnamespace: team\nimage: " + image + "\n"))
		_, err := dev.Apply(ctx, o)
		if err == nil {
			a, _ := client.Get[*v1.App](ctx, dev, "team", "peek")
			t.Errorf("developer of team deployed %q (stored image %q); want 403: they may not pull namespace other's images", image, a.Status.TemplateHash)
			dev.Delete(ctx, "App", "team", "peek")
		} else if !errors.Is(err, v1.ErrForbidden) {
			t.Errorf("apply %q: %v; want 403", image, err)
		}
	}
	// What the developer may pull, they may deploy: their own namespace's
	// images, the library's, and any other registry's.
	for i, image := range []string{"web:v1", "team/web:v1", "reg.local:5000/team/web:v1", "library/busybox:1", "example.com/other/x:v1"} {
		o, _ := v1.DecodeManifest([]byte(fmt.Sprintf("kind: App\nname: ok%d\nnamespace: team\nimage: %s\n", i, image)))
		if _, err := dev.Apply(ctx, o); err != nil {
			t.Errorf("apply %q: %v; want it admitted", image, err)
		}
	}
	// Changing anything but the image of an App whose image its author
	// may not pull (a cluster admin deployed it) is not refused.
	admin := ts.client(t, ts.Token)
	o, _ := v1.DecodeManifest([]byte("kind: App\nname: shared\nnamespace: team\nimage: other/payroll:v1\n"))
	if _, err := admin.Apply(ctx, o); err != nil {
		t.Fatalf("cluster admin deploys another namespace's image: %v", err)
	}
	o, _ = v1.DecodeManifest([]byte("kind: App\nname: shared\nnamespace: team\nimage: other/payroll:v1\nreplicas: 2\n"))
	if _, err := dev.Apply(ctx, o); err != nil {
		t.Errorf("developer scales an App whose image is admin-deployed: %v; want it admitted", err)
	}
}

// Instance status is the agent's to write. A namespace admin who can
// write it can point the load balancer and DNS at any address: loopback
// of the server, another namespace's instance (past network isolation),
// or a metadata service.
func TestOnlyNodesWriteInstanceStatus(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	govNamespace(t, ts, "team", nil)
	nsAdmin, _ := govUser(t, ts, "boss", "admin", "team")
	ctx := context.Background()
	inst := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: "web-abcde", Namespace: "team",
		Labels: map[string]string{v1.LabelApp: "web"}}, Spec: v1.InstanceSpec{App: "web", Revision: 1}}
	if err := ts.Store.Create(ctx, inst); err != nil {
		t.Fatal(err)
	}
	forged := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: "web-abcde", Namespace: "team"},
		Status: v1.InstanceStatus{Phase: "Ready", Ready: true, IP: "127.0.0.1"}}
	out, err := nsAdmin.UpdateInstanceStatus(ctx, forged)
	if err == nil {
		t.Errorf("namespace admin wrote instance status (ip %s, ready %v); served by ingress/DNS: %v; want 403",
			out.Status.IP, out.Status.Ready, discovery.Serves(out))
	} else if !errors.Is(err, v1.ErrForbidden) {
		t.Errorf("namespace admin writes instance status: %v; want 403", err)
	}
	// The admin still reads it, and the node it is bound to writes it.
	if _, err := nsAdmin.Do(ctx, http.MethodGet, "/api/v1/namespaces/team/instances/web-abcde/status", nil, nil, nil); err != nil {
		t.Errorf("namespace admin reads instance status: %v", err)
	}
	if _, err := store.Mutate(ctx, ts.Store, "team", "web-abcde", func(i *v1.Instance) error { i.Spec.Node = "n1"; return nil }); err != nil {
		t.Fatal(err)
	}
	_, nodeTok, err := auth.CreateToken(ctx, ts.Store, v1.TokenSpec{Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	forged.Status.IP = "10.88.0.5"
	if out, err := ts.client(t, nodeTok).UpdateInstanceStatus(ctx, forged); err != nil || out.Status.IP != "10.88.0.5" {
		t.Errorf("node n1 writes its instance's status: %v", err)
	}
}

// Deleting a namespace deletes the role bindings granted in it: a later
// namespace of the same name starts with no one's roles.
func TestDeletingANamespaceDeletesItsBindings(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	ctx := context.Background()
	govNamespace(t, ts, "team", nil)
	_, tok := govUser(t, ts, "carol", "developer", "team")
	admin := ts.client(t, ts.Token)
	if _, err := admin.Delete(ctx, "Namespace", "", "team"); err != nil {
		t.Fatal(err)
	}
	bs, _, err := store.List[*v1.RoleBinding](ctx, ts.Store, store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bs {
		if b.Spec.Namespace == "team" {
			t.Errorf("binding %s of the deleted namespace team survived", b.Metadata.Name)
		}
	}
	govNamespace(t, ts, "team", nil)
	if _, _, err := client.List[*v1.App](ctx, ts.client(t, tok), "team", client.ListOptions{}); !errors.Is(err, v1.ErrForbidden) {
		t.Errorf("carol lists apps of the new namespace team: %v; want 403", err)
	}
}

// A node reports samples of the instances bound to it only, labelled with
// their App as stored: not another node's, not ones that do not exist.
func TestNodeReportsOnlyItsInstances(t *testing.T) {
	w := metrics.NewWindow(time.Hour, 10*time.Second)
	ts := &testServer{apiservertest.Start(t, t.TempDir(), "127.0.0.1:0", apiserver.WithMetrics(w))}
	ctx := context.Background()
	for _, i := range []struct{ name, node string }{{"web-mine", "n1"}, {"web-theirs", "n2"}} {
		inst := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: i.name, Namespace: "default",
			Labels: map[string]string{v1.LabelApp: "web"}}, Spec: v1.InstanceSpec{App: "web", Revision: 1, Node: i.node}}
		if err := ts.Store.Create(ctx, inst); err != nil {
			t.Fatal(err)
		}
	}
	_, nodeTok, err := auth.CreateToken(ctx, ts.Store, v1.TokenSpec{Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	sample := func(name, app string) metrics.InstanceSample {
		return metrics.InstanceSample{Namespace: "default", Name: name, App: app, Point: metrics.Point{Time: now, CPU: 0.5}}
	}
	rep := metrics.Report{Node: metrics.NodeSample{CPUCapacity: 2, Point: metrics.Point{Time: now}},
		Instances: []metrics.InstanceSample{sample("web-mine", "payroll"), sample("web-theirs", "web"), sample("ghost-1", "web")}}
	for range 2 { // the second report reads the first one's lookups
		if _, err := ts.client(t, nodeTok).Do(ctx, http.MethodPost, "/api/v1/nodes/n1/metrics", nil, rep, nil); err != nil {
			t.Fatal(err)
		}
	}
	if l, ok := w.InstanceLatest("default", "web-mine"); !ok || l.App != "web" || l.Node != "n1" {
		t.Errorf("sample of n1's own instance: %+v, %v; want kept, app web (as stored), node n1", l, ok)
	}
	for _, name := range []string{"web-theirs", "ghost-1"} {
		if l, ok := w.InstanceLatest("default", name); ok {
			t.Errorf("n1 reported %s and it was kept: %+v", name, l)
		}
	}
}

// Two concurrent creates in a namespace whose quota allows one more app
// must not both be admitted.
func TestConcurrentCreatesRespectQuota(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	govNamespace(t, ts, "q", &v1.Quota{Apps: 1, Secrets: 1})
	c := ts.client(t, ts.Token)
	ctx := context.Background()
	const n = 8
	var apps, secs atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			o, _ := v1.DecodeManifest([]byte(fmt.Sprintf("kind: App\nname: a%d\nnamespace: q\nimage: x:v1\n", i)))
			if err := c.Create(ctx, o); err == nil {
				apps.Add(1)
			}
		}()
		go func() {
			defer wg.Done()
			s := &v1.Secret{TypeMeta: v1.TypeMeta{Kind: "Secret"}, Metadata: v1.ObjectMeta{Name: fmt.Sprintf("s%d", i), Namespace: "q"},
				StringData: map[string]string{"k": "v"}}
			if err := c.Create(ctx, s); err == nil {
				secs.Add(1)
			}
		}()
	}
	wg.Wait()
	// Serially, the quota holds: one more is refused.
	o, _ := v1.DecodeManifest([]byte("kind: App\nname: late\nnamespace: q\nimage: x:v1\n"))
	if err := c.Create(ctx, o); !errors.Is(err, v1.ErrQuotaExceeded) {
		t.Fatalf("serial create after the burst: %v; want quota exceeded", err)
	}
	if apps.Load() > 1 {
		t.Errorf("%d apps admitted concurrently under quota apps: 1", apps.Load())
	}
	if secs.Load() > 1 {
		t.Errorf("%d secrets admitted concurrently under quota secrets: 1", secs.Load())
	}
}

// Deleting a user through the API (gantry delete user NAME, the console,
// any client) must take their tokens and bindings with them; otherwise a
// later user of the same name inherits both.
func TestDeletingAUserDeletesTokensAndBindings(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	ctx := context.Background()
	admin := ts.client(t, ts.Token)
	_, tok := govUser(t, ts, "bob", "admin", "default")
	whoami := func() int {
		code, _ := rawAs(t, ts, tok, "GET", "/api/v1/namespaces/default/secrets", "", nil)
		return code
	}
	if _, err := admin.Delete(ctx, "User", "", "bob"); err != nil {
		t.Fatal(err)
	}
	if code := whoami(); code != http.StatusUnauthorized {
		t.Fatalf("token of a deleted user: %d", code)
	}
	toks, _, _ := store.List[*v1.Token](ctx, ts.Store, store.ListOptions{})
	bs, _, _ := store.List[*v1.RoleBinding](ctx, ts.Store, store.ListOptions{})
	left := 0
	for _, x := range toks {
		if x.Spec.User == "bob" {
			left++
		}
	}
	for _, b := range bs {
		if b.Spec.User == "bob" {
			left++
		}
	}
	// A new, unrelated Bob is created later, with no role.
	o, _ := v1.DecodeManifest([]byte("kind: User\nname: bob\n"))
	if _, err := admin.Apply(ctx, o); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d tokens/bindings of bob survived the delete", left)
	}
	if code := whoami(); code != http.StatusUnauthorized {
		t.Errorf("the old bob's token, for the new bob: %d; want 401", code)
	}
}

// maxCPU is the namespace's per-container maximum: a CPU limit above it
// must be refused as a memory limit above maxMemory is.
func TestCPULimitAboveMaxCPUIsRefused(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	ctx := context.Background()
	if _, err := store.Mutate(ctx, ts.Store, "", "default", func(n *v1.Namespace) error {
		n.Spec.Limits = &v1.LimitDefaults{MaxCPU: 2000, MaxMemory: 256 << 20}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	c := ts.client(t, ts.Token)
	mem, _ := v1.DecodeManifest([]byte("kind: App\nname: m\nimage: x:v1\nresources: {memory: 64Mi, limits: {memory: 1Gi}}\n"))
	if _, err := c.Apply(ctx, mem); !errors.Is(err, v1.ErrQuotaExceeded) {
		t.Fatalf("memory limit above maxMemory: %v; want quota exceeded", err)
	}
	cpu, _ := v1.DecodeManifest([]byte("kind: App\nname: c\nimage: x:v1\nresources: {cpu: 100m, limits: {cpu: 64}}\n"))
	if _, err := c.Apply(ctx, cpu); !errors.Is(err, v1.ErrQuotaExceeded) {
		t.Errorf("cpu limit 64 in a namespace with maxCPU 2: %v; want quota exceeded", err)
	}
	within, _ := v1.DecodeManifest([]byte("kind: App\nname: w\nimage: x:v1\nresources: {cpu: 100m, limits: {cpu: 2}}\n"))
	if _, err := c.Apply(ctx, within); err != nil {
		t.Errorf("cpu limit 2 in a namespace with maxCPU 2: %v; want it admitted", err)
	}
}

// A token cannot be created by apply: its hash (and a node credential)
// would be the caller's choice, not the server's.
func TestTokenApplyDoesNotCreate(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	ctx := context.Background()
	body := &v1.Token{TypeMeta: v1.TypeMeta{Kind: "Token"}, Metadata: v1.ObjectMeta{Name: "chosen"},
		Spec: v1.TokenSpec{Node: "n9", Hash: auth.HashSecret("known")}}
	_, err := ts.client(t, ts.Token).Do(ctx, http.MethodPut, "/api/v1/tokens/chosen", url.Values{"apply": {"true"}}, body, nil)
	if !errors.Is(err, v1.ErrUnprocessable) {
		t.Errorf("apply of a new token: %v; want 422", err)
	}
	if _, err := store.Get[*v1.Token](ctx, ts.Store, "", "chosen"); !errors.Is(err, v1.ErrNotFound) {
		t.Errorf("the applied token was stored (%v)", err)
	}
}

// A viewer reads alert rules but not notifiers, whose URLs and headers
// are credentials, as it reads no secrets.
func TestViewerDoesNotReadNotifiers(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	govNamespace(t, ts, "team", nil)
	viewer, _ := govUser(t, ts, "vic", "viewer", "team")
	ctx := context.Background()
	if _, _, err := client.List[*v1.Notifier](ctx, viewer, "team", client.ListOptions{}); !errors.Is(err, v1.ErrForbidden) {
		t.Errorf("viewer lists notifiers: %v; want 403", err)
	}
	if _, _, err := client.List[*v1.AlertRule](ctx, viewer, "team", client.ListOptions{}); err != nil {
		t.Errorf("viewer lists alert rules: %v", err)
	}
}

// Huge quantities cannot wrap the namespace's counted use around: a cpu
// beyond a billion cores is refused as a quantity, and memory × replicas
// saturates rather than overflowing, so the quota still refuses it and
// later Apps.
func TestQuotaArithmeticDoesNotOverflow(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	ctx := context.Background()
	govNamespace(t, ts, "team", &v1.Quota{CPU: 4000, Memory: 8 << 30})
	c := ts.client(t, ts.Token)
	if _, err := v1.DecodeManifest([]byte("kind: App\nname: huge\nnamespace: team\nimage: x:v1\nresources: {cpu: 4611686018427387904m}\n")); err == nil {
		t.Errorf("cpu 2^62m decoded")
	}
	mem, err := v1.DecodeManifest([]byte("kind: App\nname: mem\nnamespace: team\nimage: x:v1\nreplicas: 3\nresources: {memory: 4e18}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Apply(ctx, mem); !errors.Is(err, v1.ErrQuotaExceeded) {
		t.Errorf("memory 4e18 x 3 replicas under an 8Gi quota: %v; want quota exceeded", err)
	}
	big, _ := v1.DecodeManifest([]byte("kind: App\nname: big\nnamespace: team\nimage: x:v1\nreplicas: 100\nresources: {cpu: 4}\n"))
	if _, err := c.Apply(ctx, big); !errors.Is(err, v1.ErrQuotaExceeded) {
		t.Errorf("400 cores under a 4-core quota: %v; want quota exceeded", err)
	}
	if _, err := v1.DecodeManifest([]byte("kind: App\nname: s\nimage: x:v1\nstrategy: {maxSurge: 9223372036854775807}\n")); err == nil {
		t.Errorf("maxSurge 2^63-1 decoded")
	}
}

// What reaches past the container (privileged, host network, host ports,
// capabilities beyond the default set) takes the namespace's policy,
// which only a cluster admin writes; a developer gets 403 naming it.
func TestPolicyGatesWhatReachesTheNode(t *testing.T) {
	ts := &testServer{apiservertest.StartConfig(t, t.TempDir(), "127.0.0.1:0", apiserver.Config{AppsDomain: "localhost"})}
	ctx := context.Background()
	for name, p := range map[string]*v1.Policy{
		"plain": nil,
		"net":   {AllowCapabilities: []string{"net_admin", "CAP_SYS_PTRACE"}, AllowHostPorts: true},
		"priv":  {AllowPrivileged: true},
	} {
		ns := &v1.Namespace{TypeMeta: v1.TypeMeta{Kind: "Namespace"}, Metadata: v1.ObjectMeta{Name: name}}
		ns.Spec.Policy = p
		if err := ts.Store.Create(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	dev, _ := govUser(t, ts, "dev", "developer", "plain")
	admin := ts.client(t, ts.Token)
	for _, ns := range []string{"net", "priv"} {
		o, err := v1.DecodeManifest([]byte(fmt.Sprintf("kind: RoleBinding\nname: dev-%s\nuser: dev\nrole: developer\nnamespace: %s\n", ns, ns)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := admin.Apply(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		ns, spec string
		refusal  string // "" when admitted
	}{
		{"plain", "securityContext: {capabilities: {drop: [ALL], add: [NET_BIND_SERVICE, cap_chown]}}", ""},
		{"plain", "securityContext: {capabilities: {add: [NET_ADMIN, SYS_ADMIN, net_admin]}}", "capabilities NET_ADMIN, SYS_ADMIN are not allowed"},
		{"plain", "securityContext: {capabilities: {add: [NET_RAW]}}", "policy.allowCapabilities"},
		{"plain", "securityContext: {capabilities: {add: [ALL]}}", "policy.allowPrivileged"},
		{"plain", "ports: [{port: 53, protocol: udp, hostPort: 53}]", "host ports are not allowed"},
		{"plain", "securityContext: {privileged: true}", "policy.allowPrivileged"},
		{"net", "securityContext: {capabilities: {add: [NET_ADMIN, sys_ptrace]}}\nports: [{port: 8080, hostPort: 8081}]", ""},
		{"net", "securityContext: {capabilities: {add: [SYS_ADMIN]}}", "capabilities SYS_ADMIN are not allowed"},
		{"net", "securityContext: {capabilities: {add: [ALL]}}", "policy.allowPrivileged"},
		{"priv", "securityContext: {capabilities: {add: [ALL]}}", ""},
		{"priv", "ports: [{port: 8080, hostPort: 8082}]", "host ports are not allowed"},
	}
	for i, c := range cases {
		t.Run(c.ns+": "+c.spec, func(t *testing.T) {
			o, err := v1.DecodeManifest([]byte(fmt.Sprintf("kind: App\nname: a%d\nnamespace: %s\nimage: web:v1\n%s\n", i, c.ns, c.spec)))
			if err != nil {
				t.Fatal(err)
			}
			_, err = dev.Apply(ctx, o)
			switch {
			case c.refusal == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.refusal != "" && (!errors.Is(err, v1.ErrForbidden) || !strings.Contains(err.Error(), c.refusal)):
				t.Fatalf("got %v, want 403 saying %q", err, c.refusal)
			}
			if c.refusal != "" {
				k, _ := v1.LookupKind("App")
				if _, err := ts.Store.Get(ctx, k, c.ns, fmt.Sprintf("a%d", i)); !errors.Is(err, v1.ErrNotFound) {
					t.Fatalf("a refused App was stored: %v", err)
				}
			}
		})
	}
}
