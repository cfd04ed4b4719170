package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/bench/loadgen"
	"github.com/gantry-dev/gantry/client"
)

// TestZeroDowntimeRollouts is issue 5's headline: under an open-loop load
// of 300 requests/s through the ingress for the whole time, a rolling
// update v1 → v2, a rollout undo back to v1, and a v3 that never gets
// ready (rolled back automatically) fail not one request, and once each
// completes every response comes from the target version.
//
// GANTRY_E2E_ROLLOUT_RATE raises the load (bench/rollout runs it so); the
// requests then go out from loadgen's event loop on 64 connections.
func TestZeroDowntimeRollouts(t *testing.T) {
	// Sent at 320/s, so that the rate achieved is at least the issue's
	// 300 even on a busy machine.
	const minRate = 300
	cfg := loadgen.Config{Rate: 320}
	if v := os.Getenv("GANTRY_E2E_ROLLOUT_RATE"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < minRate || f > 1e6 {
			t.Fatalf("GANTRY_E2E_ROLLOUT_RATE=%q: want requests per second between %d and 1000000 (it raises the load)", v, minRate)
		}
		cfg = loadgen.Config{Rate: f, EventLoop: true, Connections: 64}
	}
	c := StartCluster(t, ClusterOptions{})
	c.Push(WebappImage(t), "default/webapp:v1")
	manifest := func(version, extra string) string {
		// This strategy instead of webapp's: a key given twice is an
		// error.
		return strings.Replace(webapp("hello", "default", version, 3, "strategy: {drainDelay: 500ms, maxSurge: 1, maxUnavailable: 0, progressDeadline: 15s, minReady: 1s}\n"+extra),
			"strategy: {drainDelay: 300ms}\n", "", 1)
	}
	c.apply(manifest("v1", ""))
	c.waitRunning("default", "hello", 3, 60*time.Second)

	ctx := context.Background()
	cfg.URL, cfg.Host = "http://"+c.HTTPAddr+"/", "hello.default.localhost"
	cfg.MarkerHeader, cfg.Timeout = "X-Version", 5*time.Second
	// Only a 200 is an answer from the app: a redirect or an empty 204
	// from a misrouted load balancer is a failure too.
	cfg.OK = func(status int) bool { return status == 200 }
	run, err := loadgen.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer run.Stop()
	time.Sleep(time.Second)

	// settled waits for the app to finish rolling out to a revision other
	// than before, then checks that the traffic of the next 2.5 s came
	// from version only.
	settled := func(step, version string, before int64) time.Time {
		t.Helper()
		Eventually(t, 90*time.Second, step+" to finish", func() bool {
			a := getApp(t, c, "default", "hello")
			if a.Status.Revision == before || a.Status.Phase != v1.AppRunning || a.Status.AvailableReplicas != 3 {
				return false
			}
			insts := c.Instances("default", "hello")
			if len(insts) != 3 {
				return false
			}
			for _, i := range insts {
				if i.Metadata.Deleting != nil || !i.Status.Ready || i.Spec.Template.Env[0].Value != version {
					return false
				}
			}
			return true
		})
		done := time.Now()
		// The old instances are gone from the API, so long out of the
		// load balancer (they leave it before their drain): every request
		// due from now on must be answered by version.
		time.Sleep(2500 * time.Millisecond)
		sum := run.Snapshot().Since(done).Summary()
		if len(sum.Markers) != 1 || sum.Markers[version] == 0 {
			t.Errorf("%s: after completion the answers came from %v, want only %s", step, sum.Markers, version)
		}
		return done
	}
	rollout := func(step, version string, apply func()) {
		t.Helper()
		before := getApp(t, c, "default", "hello").Status.Revision
		start := time.Now()
		apply()
		done := settled(step, version, before)
		t.Logf("%s: done in %s", step, done.Sub(start).Round(time.Millisecond))
	}
	rollout("rolling update v1 → v2", "v2", func() { c.apply(manifest("v2", "")) })
	rollout("rollout undo v2 → v1", "v1", func() { c.MustGantry("", "rollout", "undo", "app/hello") })

	// v3 never becomes ready: the rollout stalls, is rolled back after
	// the progress deadline, and v1 keeps serving throughout.
	bad := strings.Replace(manifest("v3", ""), "env: {VERSION: \"v3\"}", "env: {VERSION: \"v3\", NEVER_READY: \"1\"}", 1)
	stable := getApp(t, c, "default", "hello").Status.Revision
	c.apply(bad)
	var rb *v1.RollbackRecord
	Eventually(t, 60*time.Second, "automatic rollback of v3", func() bool {
		a := getApp(t, c, "default", "hello")
		rb = a.Status.RolledBack
		return rb != nil && a.Spec.Template.Env[0].Value == "v1"
	})
	// v3 is the revision after the stable one; the rollback goes back to
	// that one's template and makes a revision of its own.
	if rb.From != stable+1 || rb.To != stable || rb.Revision <= rb.From {
		t.Errorf("rolled back from %d to %d as revision %d; want from %d to %d as a later revision", rb.From, rb.To, rb.Revision, stable+1, stable)
	}
	if a := getApp(t, c, "default", "hello"); a.Status.Revision != rb.Revision {
		t.Errorf("the app is at revision %d, not the rollback's %d", a.Status.Revision, rb.Revision)
	}
	_, _, code := c.Gantry("", "rollout", "status", "app/hello", "--timeout", "60s")
	if code != 1 {
		t.Errorf("rollout status after an automatic rollback exited %d, want 1", code)
	}
	ev := c.MustGantry("", "events")
	if want := fmt.Sprintf("rolled back from revision %d to the template of revision %d (now revision %d)", rb.From, rb.To, rb.Revision); !strings.Contains(ev, want) {
		t.Errorf("no event saying %q:\n%s", want, ev)
	}
	// The v3 instances go, and v1 alone answers again.
	settled("automatic rollback of v3", "v1", rb.From)

	res := run.Stop()
	sum := res.Summary()
	t.Logf("load: %s", sum)
	if sum.Rate < minRate {
		t.Errorf("the generator reached only %.0f requests/s; the test needs at least %d", sum.Rate, minRate)
	}
	// A v3 instance never passed its readiness check: none of its
	// answers (its / answers 200) may have reached a client.
	if n := sum.Markers["v3"]; n != 0 {
		t.Errorf("%d requests were answered by v3, whose instances never became ready (answers by version: %v)", n, sum.Markers)
	}
	// Not a performance target: a load balancer that held requests for
	// seconds at each switch, and answered them all in the end, would
	// fail none.
	// (Less the generator's own worst lag: a busy CI machine that stalls
	// the generator is not the load balancer stalling.)
	if sum.Max-sum.MaxLag > 3*time.Second {
		t.Errorf("a request took %s from when it was due to its answer (the generator lagged %s at most): traffic stalled during the rollouts", sum.Max, sum.MaxLag)
	}
	if sum.Retried != 0 {
		// The load balancer keeps client connections for two idle
		// minutes: a request sent again on a new connection means one
		// was closed or reset under a request it had taken.
		t.Errorf("%d requests had to be sent again on a new connection", sum.Retried)
	}
	if sum.Failed != 0 {
		for _, f := range res.Failed()[:min(10, len(res.Failed()))] {
			t.Logf("failed request %d at %s: %s", f.Seq, f.Due.Format("15:04:05.000"), f.Err)
		}
		t.Fatalf("%d of %d requests failed during the rollouts: %v", sum.Failed, sum.Sent, sum.Failures)
	}
}

// TestDNSAndIngress covers service discovery and the load balancer's
// edges: exact ready IPs from dig, readiness changes seen within a
// second, short names from inside a container, unknown hosts, apps with
// no ready instance, and route collisions.
func TestDNSAndIngress(t *testing.T) {
	if _, err := exec.LookPath("dig"); err != nil {
		requireTool(t, "dig (dnsutils)")
	}
	c := StartCluster(t, ClusterOptions{})
	c.Push(WebappImage(t), "default/webapp:v1")
	c.apply(webapp("hello", "default", "v1", 3, ""))
	insts := c.waitRunning("default", "hello", 3, 60*time.Second)
	host, port, _ := net.SplitHostPort(c.DNSAddr)
	dig := func(args ...string) []string {
		t.Helper()
		// One try, of a second at most: dig's retries would hide an
		// answer that came late.
		out, err := exec.Command("dig", append([]string{"@" + host, "-p", port, "+short", "+time=1", "+tries=1"}, args...)...).Output()
		if err != nil {
			t.Fatalf("dig %v: %v", args, err)
		}
		f := strings.Fields(string(out))
		sort.Strings(f)
		return f
	}
	ips := func(l []*v1.Instance, skip string) []string {
		var out []string
		for _, i := range l {
			if i.Metadata.Name != skip {
				out = append(out, i.Status.IP)
			}
		}
		sort.Strings(out)
		return out
	}
	name := "hello.default.svc.gantry.internal"
	t.Run("dig returns exactly the ready IPs", func(t *testing.T) {
		if got, want := dig(name), ips(insts, ""); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("dig %s = %v, want %v", name, got, want)
		}
	})
	t.Run("dig -x names the instance", func(t *testing.T) {
		i := insts[0]
		want := i.Metadata.Name + "." + name + "."
		if got := dig("-x", i.Status.IP); strings.Join(got, ",") != want {
			t.Fatalf("dig -x %s = %v, want %s", i.Status.IP, got, want)
		}
	})
	t.Run("a readiness change shows in DNS within a second", func(t *testing.T) {
		sick := insts[0]
		if code, _, err := HTTPGet("http://"+sick.Status.IP+":8080/sick", ""); err != nil || code != 200 {
			t.Fatalf("GET /sick: %d %v", code, err)
		}
		// The readiness check runs every 200ms with failureThreshold 3:
		// the instance is unready after ~600ms. Measure from there.
		Eventually(t, 10*time.Second, "instance unready", func() bool {
			i, err := client.Get[*v1.Instance](context.Background(), c.Client, "default", sick.Metadata.Name)
			return err == nil && !i.Status.Ready
		})
		// within checks that DNS answers want within a second of since.
		within := func(what, want string, since time.Time) {
			t.Helper()
			for {
				got := strings.Join(dig(name), ",")
				took := time.Since(since)
				if took > time.Second {
					t.Fatalf("%s: DNS answered [%s] %s after the status changed; want [%s] within a second", what, got, took.Round(time.Millisecond), want)
				}
				if got == want {
					t.Logf("%s: DNS reflected it %s after the status", what, took.Round(time.Millisecond))
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		within("unready", strings.Join(ips(insts, sick.Metadata.Name), ","), time.Now())
		// And back: ready again (the next subtests expect every
		// instance ready and in DNS).
		HTTPGet("http://"+sick.Status.IP+":8080/well", "")
		Eventually(t, 10*time.Second, "instance ready again", func() bool {
			i, err := client.Get[*v1.Instance](context.Background(), c.Client, "default", sick.Metadata.Name)
			return err == nil && i.Status.Ready
		})
		within("ready again", strings.Join(ips(insts, ""), ","), time.Now())
	})
	t.Run("an instance of another app resolves hello by short name", func(t *testing.T) {
		c.apply(webapp("client", "default", "v1", 1, ""))
		cl := c.waitRunning("default", "client", 1, 60*time.Second)[0]
		code, body, err := HTTPGet("http://"+cl.Status.IP+":8080/resolve?name=hello", "")
		if err != nil || code != 200 {
			t.Fatalf("resolve hello from inside: %d %q %v", code, body, err)
		}
		// The answer is Go's []string: "[10.77.0.2 10.77.0.3]".
		got := strings.Fields(strings.Trim(strings.TrimSpace(body), "[]"))
		sort.Strings(got)
		if want := ips(c.Instances("default", "hello"), ""); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("in-container lookup of hello = %v, want exactly %v", got, want)
		}
	})
	t.Run("the ingress routes the default host", func(t *testing.T) {
		code, body, err := HTTPGet("http://"+c.HTTPAddr+"/", "hello.default.localhost")
		if err != nil || code != 200 || !strings.Contains(body, "version=v1") {
			t.Fatalf("GET via ingress: %d %q %v", code, body, err)
		}
	})
	t.Run("an unknown host gets 404 with a clear body", func(t *testing.T) {
		code, body, _ := HTTPGet("http://"+c.HTTPAddr+"/", "nobody.default.localhost")
		var e struct{ Reason, Message string }
		if code != 404 || json.Unmarshal([]byte(body), &e) != nil || e.Reason != "NotFound" ||
			!strings.Contains(e.Message, `no app routes host "nobody.default.localhost"`) {
			t.Fatalf("unknown host: %d %q; want 404 with reason NotFound and a message naming the host", code, body)
		}
	})
	t.Run("an app with no ready instance gets 503", func(t *testing.T) {
		c.apply(strings.Replace(webapp("dark", "default", "v1", 1, ""), "env: {VERSION: \"v1\"}", "env: {VERSION: \"v1\", NEVER_READY: \"1\"}", 1))
		Eventually(t, 30*time.Second, "dark running", func() bool {
			l := c.Instances("default", "dark")
			return len(l) == 1 && l[0].Status.Phase == v1.PhaseRunning
		})
		code, body, _ := HTTPGet("http://"+c.HTTPAddr+"/", "dark.default.localhost")
		if code != 503 || !strings.Contains(body, "no ready instance") {
			t.Fatalf("no ready instance: %d %q", code, body)
		}
	})
	t.Run("routes that collide across apps are refused, naming the owner", func(t *testing.T) {
		c.apply(webapp("first", "default", "v1", 1, "routes: [{host: shop.example.com, path: /}]\n"))
		_, errOut, code := c.Gantry(webapp("second", "default", "v1", 1, "routes: [{host: shop.example.com, path: /}]\n"), "apply", "-f", "-")
		if code == 0 || !strings.Contains(errOut, "default/first") {
			t.Fatalf("colliding route: exit %d, %q", code, errOut)
		}
		// The route stays the first app's, and the second was not made.
		Eventually(t, 60*time.Second, "shop.example.com served by first", func() bool {
			code, body, err := HTTPGet("http://"+c.HTTPAddr+"/", "shop.example.com")
			return err == nil && code == 200 && strings.Contains(body, "instance=first-")
		})
		if _, err := client.Get[*v1.App](context.Background(), c.Client, "default", "second"); !errors.Is(err, v1.ErrNotFound) {
			t.Errorf("app second after a refused apply: %v, want not found", err)
		}
	})
}

func requireTool(t *testing.T, what string) {
	t.Helper()
	if isCI() {
		t.Fatalf("%s is missing; CI=true forbids skipping", what)
	}
	t.Skipf("%s is missing (scripts/setup.sh installs it)", what)
}
