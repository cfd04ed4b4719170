package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/runtime"
)

// probeKind names the three checks.
type probeKind string

const (
	startupProbe   probeKind = "startup"
	readinessProbe probeKind = "readiness"
	livenessProbe  probeKind = "liveness"
)

// probeResult is a change of a probe's verdict after its thresholds.
type probeResult struct {
	kind probeKind
	ok   bool
	msg  string
}

// probeClient is shared by every HTTP check: no keep-alive, so a check
// measures a fresh connection the way a client would make it. The
// check's context bounds the connect with the rest, by its timeout.
var probeClient = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true, DialContext: (&net.Dialer{}).DialContext},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// errNoVerdict is a check that could not be made (containerd away): it
// counts neither as a pass nor as a failure.
var errNoVerdict = errors.New("the check could not run")

// check runs one probe attempt.
func check(ctx context.Context, rt Runtime, id string, ip net.IP, p *v1.Probe) error {
	timeout := p.Timeout.D()
	if timeout <= 0 {
		timeout = time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case p.HTTP != nil:
		if ip == nil {
			return fmt.Errorf("no IP to probe")
		}
		u := "http://" + net.JoinHostPort(ip.String(), strconv.Itoa(p.HTTP.Port)) + p.HTTP.Path
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		req.Header.Set("User-Agent", "gantry-probe")
		resp, err := probeClient.Do(req)
		if err != nil {
			return fmt.Errorf("GET %s: %v", p.HTTP.Path, shortNetErr(err))
		}
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("GET %s returned HTTP %d", p.HTTP.Path, resp.StatusCode)
		}
		return nil
	case p.TCP != nil:
		if ip == nil {
			return fmt.Errorf("no IP to probe")
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip.String(), strconv.Itoa(p.TCP.Port)))
		if err != nil {
			return fmt.Errorf("connect to port %d: %v", p.TCP.Port, shortNetErr(err))
		}
		c.Close()
		return nil
	case p.Exec != nil:
		code, err := rt.Exec(ctx, id, runtime.ExecOptions{Cmd: p.Exec.Command})
		if errors.Is(err, v1.ErrUnavailable) {
			// containerd is away (restarting): no verdict on the app.
			return fmt.Errorf("exec %v: %w", p.Exec.Command, errNoVerdict)
		}
		if err != nil {
			return fmt.Errorf("exec %v: %v", p.Exec.Command, err)
		}
		if code != 0 {
			return fmt.Errorf("exec %v exited with %d", p.Exec.Command, code)
		}
		return nil
	}
	return fmt.Errorf("probe has no check")
}

func shortNetErr(err error) error {
	if oe, ok := err.(*net.OpError); ok && oe.Err != nil {
		return oe.Err
	}
	if ue, ok := err.(interface{ Unwrap() error }); ok {
		if inner := ue.Unwrap(); inner != nil {
			if oe, ok := inner.(*net.OpError); ok && oe.Err != nil {
				return oe.Err
			}
		}
	}
	return err
}

// runProbes runs the instance's probes for one run of its container and
// reports verdict changes on out. Startup gates the others; readiness
// starts false (unless it begins ready, for an adopted container) and
// liveness true.
func runProbes(ctx context.Context, rt Runtime, id string, ip net.IP, h v1.Health, startReady bool, out chan<- probeResult) {
	send := func(r probeResult) bool {
		select {
		case out <- r:
			return true
		case <-ctx.Done():
			return false
		}
	}
	if h.Startup != nil {
		if !loop(ctx, rt, id, ip, h.Startup, false, untilPass, func(ok bool, msg string) bool {
			if ok {
				return false // stop: started
			}
			return send(probeResult{startupProbe, false, msg})
		}) {
			return
		}
		if !send(probeResult{startupProbe, true, ""}) {
			return
		}
	}
	if h.Readiness == nil {
		send(probeResult{readinessProbe, true, ""})
	} else {
		go loop(ctx, rt, id, ip, h.Readiness, startReady, onFlip, func(ok bool, msg string) bool {
			return send(probeResult{readinessProbe, ok, msg})
		})
	}
	if h.Liveness != nil {
		go loop(ctx, rt, id, ip, h.Liveness, true, repeatFailures, func(ok bool, msg string) bool {
			return send(probeResult{livenessProbe, ok, msg})
		})
	}
}

// loopMode says when loop reports a verdict.
type loopMode int

const (
	// onFlip reports each change of verdict (readiness).
	onFlip loopMode = iota
	// untilPass returns true at the first verdict of success (startup).
	// Failures are reported as for repeatFailures.
	untilPass
	// repeatFailures reports a failing verdict after each
	// failureThreshold failures in a row, not only when the verdict
	// flips (liveness): if the stop it led to failed, the next report is
	// another try, as the kubelet kills again at the next failure.
	repeatFailures
)

// loop runs a probe every period and calls onChange when its verdict
// is reached (after successThreshold passes or failureThreshold
// failures), as mode says. It returns true at the first verdict of
// success in mode untilPass, and false when ctx ends or onChange asks
// to stop.
func loop(ctx context.Context, rt Runtime, id string, ip net.IP, p *v1.Probe, state bool, mode loopMode, onChange func(ok bool, msg string) bool) bool {
	period := p.Period.D()
	if period <= 0 {
		period = time.Second
	}
	fail, pass := max(p.FailureThreshold, 1), max(p.SuccessThreshold, 1)
	if d := p.InitialDelay.D(); d > 0 {
		sleep(ctx, d)
	}
	// A first check soon after start lets a fast app become ready in
	// tens of milliseconds rather than a whole period.
	next := 20 * time.Millisecond
	fails, passes := 0, 0
	reportedFailure := false
	var counted time.Time // when the last failure counted toward fail
	for {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(next):
		}
		err := check(ctx, rt, id, ip, p)
		if ctx.Err() != nil {
			return false
		}
		if errors.Is(err, errNoVerdict) {
			next = min(period, time.Second)
			continue
		}
		if err == nil {
			passes, fails = passes+1, 0
			if passes >= pass && (!state || mode == untilPass) {
				state = true
				if mode == untilPass {
					return true
				}
				if !onChange(true, "") {
					return false
				}
			}
		} else {
			passes = 0
			// The quick retries below come more often than the period;
			// failures count at most once a period, so failureThreshold
			// still means that many periods (a startup check's budget).
			if now := time.Now(); counted.IsZero() || now.Sub(counted) >= period {
				fails, counted = fails+1, now
			}
			if fails >= fail && (state || !reportedFailure || mode != onFlip) {
				state, reportedFailure = false, true
				if mode != onFlip {
					fails = 0
				}
				if !onChange(false, err.Error()) {
					return false
				}
			}
		}
		// Until the first success, retry quickly (but not faster than
		// every 100ms) so startup is not held back by the period.
		if !state && passes == 0 && !reportedFailure && fails < fail {
			next = min(period, 100*time.Millisecond)
		} else {
			next = period
		}
	}
}
