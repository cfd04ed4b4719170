package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

var localhost = net.ParseIP("127.0.0.1")

// closedPort returns a port on 127.0.0.1 that nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

func TestCheckHTTP(t *testing.T) {
	var failHits atomic.Int32
	var userAgent atomic.Value
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; {
		case p == "/":
			userAgent.Store(r.UserAgent())
		case strings.HasPrefix(p, "/status/"):
			code, _ := strconv.Atoi(strings.TrimPrefix(p, "/status/"))
			w.WriteHeader(code)
		case p == "/redirect":
			http.Redirect(w, r, "/fail", http.StatusFound)
		case p == "/fail":
			failHits.Add(1)
			w.WriteHeader(http.StatusInternalServerError)
		case p == "/slow":
			select {
			case <-r.Context().Done():
			case <-release:
			}
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first: frees a stuck /slow
	port := srv.Listener.Addr().(*net.TCPAddr).Port

	tests := []struct {
		name    string
		path    string
		timeout time.Duration
		wantErr string // "" means the check passes
	}{
		{"200 passes", "/status/200", 0, ""},
		{"204 passes", "/status/204", 0, ""},
		{"399, the last 3xx, passes", "/status/399", 0, ""},
		{"a redirect passes without being followed to its failing target", "/redirect", 0, ""},
		{"400 fails naming the path and status", "/status/400", 0, "GET /status/400 returned HTTP 400"},
		{"an unknown path fails with 404", "/missing", 0, "GET /missing returned HTTP 404"},
		{"500 fails naming the status", "/status/500", 0, "GET /status/500 returned HTTP 500"},
		{"503 fails naming the status", "/status/503", 0, "GET /status/503 returned HTTP 503"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &v1.Probe{HTTP: &v1.HTTPCheck{Path: tt.path, Port: port}, Timeout: v1.Duration(tt.timeout)}
			err := check(t.Context(), nil, "inst", localhost, p)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("check failed: %v", err)
				}
				return
			}
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("got error %v, want %q", err, tt.wantErr)
			}
		})
	}
	if n := failHits.Load(); n != 0 {
		t.Errorf("the probe followed a redirect: /fail was requested %d times", n)
	}

	t.Run("an empty path probes / as gantry-probe", func(t *testing.T) {
		p := &v1.Probe{HTTP: &v1.HTTPCheck{Port: port}}
		if err := check(t.Context(), nil, "inst", localhost, p); err != nil {
			t.Fatalf("check failed: %v", err)
		}
		if ua, _ := userAgent.Load().(string); ua != "gantry-probe" {
			t.Errorf("User-Agent %q, want gantry-probe", ua)
		}
	})

	t.Run("a closed port fails with connection refused", func(t *testing.T) {
		p := &v1.Probe{HTTP: &v1.HTTPCheck{Path: "/healthz", Port: closedPort(t)}}
		err := check(t.Context(), nil, "inst", localhost, p)
		if err == nil || !strings.HasPrefix(err.Error(), "GET /healthz: ") || !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("got error %v, want GET /healthz: ... connection refused", err)
		}
	})

	t.Run("a handler slower than the probe's timeout fails", func(t *testing.T) {
		p := &v1.Probe{HTTP: &v1.HTTPCheck{Path: "/slow", Port: port}, Timeout: v1.Duration(100 * time.Millisecond)}
		start := time.Now()
		err := check(t.Context(), nil, "inst", localhost, p)
		if err == nil || !strings.HasPrefix(err.Error(), "GET /slow: ") || !strings.Contains(err.Error(), "deadline exceeded") {
			t.Fatalf("got error %v, want GET /slow: ... deadline exceeded", err)
		}
		// Generous: the handler never answers, so only the timeout ends it.
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("check took %s with a 100ms timeout", d)
		}
	})

	t.Run("without an IP the check fails", func(t *testing.T) {
		p := &v1.Probe{HTTP: &v1.HTTPCheck{Path: "/status/200", Port: port}}
		if err := check(t.Context(), nil, "inst", nil, p); err == nil || err.Error() != "no IP to probe" {
			t.Fatalf("got error %v, want no IP to probe", err)
		}
	})
}

func TestCheckTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	open := ln.Addr().(*net.TCPAddr).Port
	closed := closedPort(t)

	tests := []struct {
		name    string
		ip      net.IP
		port    int
		wantErr string // prefix of the error; "" means the check passes
	}{
		{"a listening port passes", localhost, open, ""},
		{"a closed port fails naming the port", localhost, closed, fmt.Sprintf("connect to port %d: ", closed)},
		{"without an IP the check fails", nil, open, "no IP to probe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := check(t.Context(), nil, "inst", tt.ip, &v1.Probe{TCP: &v1.TCPCheck{Port: tt.port}})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("check failed: %v", err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Fatalf("got error %v, want one starting %q", err, tt.wantErr)
			}
		})
	}

	t.Run("a refused connection says so without the dial noise", func(t *testing.T) {
		err := check(t.Context(), nil, "inst", localhost, &v1.Probe{TCP: &v1.TCPCheck{Port: closed}})
		want := fmt.Sprintf("connect to port %d: connect: connection refused", closed)
		if err == nil || err.Error() != want {
			t.Fatalf("got error %v, want %q", err, want)
		}
	})
}

func TestCheckExec(t *testing.T) {
	cmd := []string{"sh", "-c", "test -f /ready"}
	tests := []struct {
		name    string
		code    int
		err     error
		wantErr string // "" means the check passes
	}{
		{"exit code 0 passes", 0, nil, ""},
		{"exit code 1 fails naming the code", 1, nil, "exec [sh -c test -f /ready] exited with 1"},
		{"exit code 137 fails naming the code", 137, nil, "exec [sh -c test -f /ready] exited with 137"},
		{"a negative exit code fails", -1, nil, "exec [sh -c test -f /ready] exited with -1"},
		{"an exec that cannot run fails with its error", 0, errExecBroken, "exec [sh -c test -f /ready]: exec broken"},
		{"an error wins over an exit code", 3, errExecBroken, "exec [sh -c test -f /ready]: exec broken"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeRuntime{exec: func(context.Context) (int, error) { return tt.code, tt.err }}
			// The exec check runs in the container: it needs no IP.
			err := check(t.Context(), f, "default_web-1", nil, &v1.Probe{Exec: &v1.ExecCheck{Command: cmd}})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("check failed: %v", err)
				}
			} else if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("got error %v, want %q", err, tt.wantErr)
			}
			calls := f.execCalls()
			if len(calls) != 1 {
				t.Fatalf("%d execs, want 1", len(calls))
			}
			if calls[0].id != "default_web-1" || !slices.Equal(calls[0].cmd, cmd) {
				t.Errorf("exec of %q in %q, want %q in default_web-1", calls[0].cmd, calls[0].id, cmd)
			}
		})
	}
}

func TestCheckTimeout(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration
		want    time.Duration
	}{
		{"the probe's timeout bounds the check", 50 * time.Millisecond, 50 * time.Millisecond},
		{"no timeout means one second", 0, time.Second},
		{"a negative timeout means one second", -time.Second, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeRuntime{script: "p"}
			p := &v1.Probe{Exec: &v1.ExecCheck{Command: []string{"true"}}, Timeout: v1.Duration(tt.timeout)}
			before := time.Now()
			if err := check(t.Context(), f, "inst", nil, p); err != nil {
				t.Fatal(err)
			}
			after := time.Now()
			c := f.execCalls()[0]
			if !c.hasDeadline {
				t.Fatal("exec ran without a deadline")
			}
			if c.deadline.Before(before.Add(tt.want)) || c.deadline.After(after.Add(tt.want)) {
				t.Errorf("deadline %s after the check started, want %s", c.deadline.Sub(before), tt.want)
			}
		})
	}
}

func TestCheckWithoutKind(t *testing.T) {
	err := check(t.Context(), nil, "inst", localhost, &v1.Probe{Timeout: v1.Duration(time.Second)})
	if err == nil || err.Error() != "probe has no check" {
		t.Fatalf("got error %v, want probe has no check", err)
	}
}

func TestShortNetErr(t *testing.T) {
	refused := syscall.ECONNREFUSED
	op := &net.OpError{Op: "dial", Net: "tcp", Err: refused}
	plain := errors.New("plain")
	urlPlain := &url.Error{Op: "Get", URL: "http://x/", Err: plain}
	opNil := &net.OpError{Op: "dial", Net: "tcp"}
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"an OpError gives its cause", op, refused},
		{"a url.Error around an OpError gives the OpError's cause", &url.Error{Op: "Get", URL: "http://x/", Err: op}, refused},
		{"a wrapped OpError gives its cause", fmt.Errorf("dial: %w", op), refused},
		{"a url.Error around something else stays whole", urlPlain, urlPlain},
		{"an OpError without a cause stays whole", opNil, opNil},
		{"any other error stays whole", plain, plain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := shortNetErr(tt.err); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// loopRun is the outcome of one loop call.
type loopRun struct {
	ret     bool
	changes []string // "P<n>" or "F<n>": the verdict and after how many checks
	msgs    []string
	calls   int
}

// runLoop runs loop on an exec probe answered by f and records the
// verdict changes. onChange returns false on its stopAt-th call (never
// when stopAt is 0).
func runLoop(t *testing.T, ctx context.Context, f *fakeRuntime, p *v1.Probe, state bool, mode loopMode, stopAt int) loopRun {
	t.Helper()
	var r loopRun
	var mu sync.Mutex
	onChange := func(ok bool, msg string) bool {
		n := len(f.execCalls())
		mu.Lock()
		defer mu.Unlock()
		v := "F"
		if ok {
			v = "P"
		}
		r.changes = append(r.changes, v+strconv.Itoa(n))
		r.msgs = append(r.msgs, msg)
		return stopAt == 0 || len(r.changes) < stopAt
	}
	done := make(chan bool, 1)
	go func() { done <- loop(ctx, f, "inst", nil, p, state, mode, onChange) }()
	select {
	case r.ret = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("loop did not return within 10s")
	}
	mu.Lock()
	defer mu.Unlock()
	r.calls = len(f.execCalls())
	return r
}

func execProbe(period time.Duration, failureThreshold, successThreshold int) *v1.Probe {
	return &v1.Probe{
		Exec:             &v1.ExecCheck{Command: []string{"probe"}},
		Period:           v1.Duration(period),
		FailureThreshold: failureThreshold,
		SuccessThreshold: successThreshold,
	}
}

func TestLoopThresholds(t *testing.T) {
	// The script ('p' pass, 'f' exit 1, 'e' exec error) runs out by
	// cancelling the context, so a run that reaches its end returns false
	// after len(script)+1 checks.
	tests := []struct {
		name       string
		state      bool
		mode       loopMode
		fail, pass int
		script     string
		stopAt     int
		want       []string
		wantRet    bool
		wantCalls  int
	}{
		{"a probe that starts failing reports a pass at once", false, onFlip, 3, 1, "ppp", 0, []string{"P1"}, false, 4},
		{"a passing probe that starts passing reports nothing", true, onFlip, 3, 1, "ppp", 0, nil, false, 4},
		{"a pass is reported only after successThreshold passes in a row", false, onFlip, 5, 3, "ppfppp", 0, []string{"P6"}, false, 7},
		{"a failure resets the count of passes", false, onFlip, 5, 3, "ppfpp", 0, nil, false, 6},
		{"a failure is reported only after failureThreshold failures in a row", true, onFlip, 3, 1, "fff", 0, []string{"F3"}, false, 4},
		{"a pass resets the count of failures", true, onFlip, 3, 1, "ffpff", 0, nil, false, 6},
		{"failures after a pass count from zero", true, onFlip, 3, 1, "ffpfff", 0, []string{"F6"}, false, 7},
		{"a probe that starts failing reports its first failure once", false, onFlip, 2, 1, "ffffff", 0, []string{"F2"}, false, 7},
		{"a failing probe that starts failing reports failure and then the pass", false, onFlip, 1, 1, "fp", 0, []string{"F1", "P2"}, false, 3},
		{"verdicts flip back and forth at their thresholds", true, onFlip, 2, 2, "ffppff", 0, []string{"F2", "P4", "F6"}, false, 7},
		{"thresholds of one report every flip", true, onFlip, 1, 1, "fpfp", 0, []string{"F1", "P2", "F3", "P4"}, false, 5},
		{"thresholds of zero count as one", true, onFlip, 0, 0, "fp", 0, []string{"F1", "P2"}, false, 3},
		{"an exec error counts as a failure", true, onFlip, 2, 1, "fe", 0, []string{"F2"}, false, 3},
		{"a check cut short by the end of ctx is not reported", true, onFlip, 1, 1, "", 0, nil, false, 1},

		{"untilPass returns true at the first pass without reporting it", false, untilPass, 3, 1, "ffp", 0, nil, true, 3},
		{"untilPass reports a failing verdict after each failureThreshold failures before the pass", false, untilPass, 2, 1, "fffffp", 0, []string{"F2", "F4"}, true, 6},
		{"untilPass waits for successThreshold passes in a row", false, untilPass, 3, 2, "pfpp", 0, nil, true, 4},
		{"untilPass returns false when ctx ends before a pass", false, untilPass, 1, 1, "fff", 0, []string{"F1", "F2", "F3"}, false, 4},

		{"repeatFailures reports each run of failureThreshold failures", true, repeatFailures, 2, 1, "fffff", 0, []string{"F2", "F4"}, false, 6},
		{"repeatFailures reports a pass after failures", true, repeatFailures, 2, 1, "ffpff", 0, []string{"F2", "P3", "F5"}, false, 6},
		{"repeatFailures does not report passes that change nothing", true, repeatFailures, 1, 1, "ppp", 0, nil, false, 4},

		{"onChange refusing a failure stops the loop", true, onFlip, 1, 1, "ffff", 1, []string{"F1"}, false, 1},
		{"onChange refusing a pass stops the loop", false, onFlip, 1, 1, "pppp", 1, []string{"P1"}, false, 1},
		{"onChange refusing a later change stops the loop there", true, onFlip, 1, 1, "fpfpfp", 3, []string{"F1", "P2", "F3"}, false, 3},
		{"untilPass stops when onChange refuses a failure", false, untilPass, 1, 1, "fp", 1, []string{"F1"}, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			f := &fakeRuntime{script: tt.script, cancel: cancel}
			r := runLoop(t, ctx, f, execProbe(time.Millisecond, tt.fail, tt.pass), tt.state, tt.mode, tt.stopAt)
			if !slices.Equal(r.changes, tt.want) {
				t.Errorf("changes %q, want %q", r.changes, tt.want)
			}
			if r.ret != tt.wantRet {
				t.Errorf("loop returned %v, want %v", r.ret, tt.wantRet)
			}
			if r.calls != tt.wantCalls {
				t.Errorf("%d checks, want %d", r.calls, tt.wantCalls)
			}
			// A failure carries the error of the check that tipped it.
			for i, c := range r.changes {
				n, _ := strconv.Atoi(c[1:])
				want := ""
				if c[0] == 'F' {
					want = "exec [probe] exited with 1"
					if tt.script[n-1] == 'e' {
						want = "exec [probe]: exec broken"
					}
				}
				if r.msgs[i] != want {
					t.Errorf("change %s has message %q, want %q", c, r.msgs[i], want)
				}
			}
		})
	}
}

func TestLoopStops(t *testing.T) {
	t.Run("ctx ending during the initial delay stops the loop before any check", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		f := &fakeRuntime{script: "ppp"}
		p := execProbe(time.Millisecond, 1, 1)
		p.InitialDelay = v1.Duration(time.Hour)
		time.AfterFunc(20*time.Millisecond, cancel)
		r := runLoop(t, ctx, f, p, false, onFlip, 0)
		if r.ret || r.calls != 0 || len(r.changes) != 0 {
			t.Errorf("returned %v after %d checks with changes %q, want false after none", r.ret, r.calls, r.changes)
		}
	})

	t.Run("ctx ending between checks stops the loop without waiting the period", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		checked := make(chan struct{}, 1)
		f := &fakeRuntime{exec: func(context.Context) (int, error) {
			select {
			case checked <- struct{}{}:
			default:
			}
			return 0, nil
		}}
		go func() {
			<-checked
			cancel()
		}()
		r := runLoop(t, ctx, f, execProbe(time.Hour, 1, 1), true, onFlip, 0)
		if r.ret || r.calls != 1 || len(r.changes) != 0 {
			t.Errorf("returned %v after %d checks with changes %q, want false after 1", r.ret, r.calls, r.changes)
		}
	})
}

func TestLoopPacing(t *testing.T) {
	t.Run("a probe that has not yet passed retries failures quickly despite a long period", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		f := &fakeRuntime{script: "ff", cancel: cancel}
		// With an hour's period, a third check within runLoop's 10s
		// means the retries did not wait for the period.
		r := runLoop(t, ctx, f, execProbe(time.Hour, 3, 1), false, onFlip, 0)
		if r.calls != 3 || len(r.changes) != 0 {
			t.Errorf("%d checks with changes %q, want 3 and none", r.calls, r.changes)
		}
	})

	for _, tt := range []struct {
		name   string
		state  bool
		script string
	}{
		{"a passing probe waits the period after a failure below the threshold", true, "f"},
		{"a probe waits the period after a pass below the threshold", false, "p"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var calls atomic.Int32
			f := &fakeRuntime{exec: func(context.Context) (int, error) {
				if calls.Add(1) == 1 {
					// Give a wrongly quick second check 300ms to happen.
					time.AfterFunc(300*time.Millisecond, cancel)
				}
				if tt.script[0] == 'f' {
					return 1, nil
				}
				return 0, nil
			}}
			r := runLoop(t, ctx, f, execProbe(time.Hour, 3, 3), tt.state, onFlip, 0)
			if r.calls != 1 || len(r.changes) != 0 {
				t.Errorf("%d checks within 300ms of the first with changes %q, want 1 and none (the next is an hour away)", r.calls, r.changes)
			}
		})
	}
}

// probeRun runs runProbes on exec probes answered by script and returns
// what it sent, once the probes are done: runProbes has returned and,
// when a readiness or liveness loop runs, the script is used up.
func probeRun(t *testing.T, h v1.Health, startReady bool, script string) []probeResult {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	usedUp := make(chan struct{})
	var once sync.Once
	f := &fakeRuntime{script: script, cancel: func() { cancel(); once.Do(func() { close(usedUp) }) }}
	out := make(chan probeResult, 16)
	done := make(chan struct{})
	go func() {
		runProbes(ctx, f, "inst", nil, h, startReady, out)
		close(done)
	}()
	wait := func(c <-chan struct{}, what string) {
		select {
		case <-c:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s within 10s", what)
		}
	}
	wait(done, "runProbes did not return")
	if h.Readiness != nil || h.Liveness != nil {
		wait(usedUp, "the probes did not use up the script")
	}
	var got []probeResult
	for {
		select {
		case r := <-out:
			got = append(got, r)
		default:
			return got
		}
	}
}

func TestRunProbes(t *testing.T) {
	probe := func() *v1.Probe { return execProbe(time.Millisecond, 1, 1) }
	failed := "exec [probe] exited with 1"
	tests := []struct {
		name       string
		health     v1.Health
		startReady bool
		script     string
		want       []probeResult
	}{
		{"without checks the instance is ready at once", v1.Health{}, false, "",
			[]probeResult{{readinessProbe, true, ""}}},
		{"a startup check gates readiness", v1.Health{Startup: probe()}, false, "fp",
			[]probeResult{{startupProbe, false, failed}, {startupProbe, true, ""}, {readinessProbe, true, ""}}},
		{"a startup check that never passes sends no readiness, and each failing verdict", v1.Health{Startup: probe()}, false, "ff",
			[]probeResult{{startupProbe, false, failed}, {startupProbe, false, failed}}},
		{"readiness starts false and follows its check", v1.Health{Readiness: probe()}, false, "pf",
			[]probeResult{{readinessProbe, true, ""}, {readinessProbe, false, failed}}},
		{"readiness that starts ready reports only a failure", v1.Health{Readiness: probe()}, true, "pf",
			[]probeResult{{readinessProbe, false, failed}}},
		{"readiness checks start after the startup check passes", v1.Health{Startup: probe(), Readiness: probe()}, false, "pfp",
			[]probeResult{{startupProbe, true, ""}, {readinessProbe, false, failed}, {readinessProbe, true, ""}}},
		{"liveness starts true and reports a failure", v1.Health{Liveness: probe()}, false, "pf",
			[]probeResult{{readinessProbe, true, ""}, {livenessProbe, false, failed}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := probeRun(t, tt.health, tt.startReady, tt.script)
			if !slices.Equal(got, tt.want) {
				t.Errorf("sent %+v, want %+v", got, tt.want)
			}
		})
	}
}
