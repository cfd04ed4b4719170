package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/network"
	"github.com/gantry-dev/gantry/internal/runtime"
)

// worker owns one instance on this node for its whole life: it prepares
// and starts the container, restarts it per the restart policy, runs its
// probes, and finally drains, stops and removes it.
type worker struct {
	a        *Agent
	key, id  string
	uid      string
	ns, name string
	// adopted is the container run found and adopted, if any; only the
	// worker's goroutine uses it.
	adopted runtime.Container
	// exitCounted: the exit afterExit handles next was counted in
	// status.restarts already, by the agent before this one.
	exitCounted bool
	// stopping is a stop a failed health check began, in progress when
	// the agent before this one stopped: the next watchRun finishes it.
	// Only the worker's goroutine uses it.
	stopping *checkStop
	// secrets are the secret values in the container's environment,
	// which runtime errors may quote (see redact). Only the worker's
	// goroutine uses them.
	secrets []string

	mu       sync.Mutex
	desired  *v1.Instance
	removing bool // the instance is being deleted: drain and stop
	gone     bool // the instance object no longer exists: stop now
	ip       net.IP
	hostNet  bool // in the node's network namespace: ip is the node's
	wake     chan struct{}
	done     chan struct{}

	status   v1.InstanceStatus // as last written
	reported bool
	// unsent is a status a write failed to deliver (the API server
	// restarting, say): later changes build on it, and watchRun writes it
	// again until it lands.
	unsent *v1.InstanceStatus

	// dropTask: a task made by an earlier setup attempt may exist and
	// must be deleted before the next is made (see setup).
	dropTask bool
}

func newWorker(a *Agent, i *v1.Instance) *worker {
	return &worker{
		a: a, key: i.Metadata.Key(), id: containerID(i.Metadata.Key()), uid: i.Metadata.UID,
		ns: i.Metadata.Namespace, name: i.Metadata.Name,
		desired: i, status: i.Status, wake: make(chan struct{}, 1), done: make(chan struct{}),
		// Known from the start, so that a worker made for an instance
		// already draining (an agent restart) never restarts its
		// container.
		removing: i.Metadata.Deleting != nil,
	}
}

func (w *worker) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *worker) update(i *v1.Instance) {
	w.mu.Lock()
	policyChanged := !slices.Equal(w.desired.Spec.AllowFrom, i.Spec.AllowFrom)
	w.desired = i
	if i.Metadata.Deleting != nil {
		w.removing = true
	}
	w.mu.Unlock()
	if policyChanged {
		w.a.policyChanged()
	}
	w.signal()
}

func (w *worker) remove(gone bool) {
	w.mu.Lock()
	w.removing = true
	w.gone = w.gone || gone
	w.mu.Unlock()
	w.signal()
}

func (w *worker) state() (inst *v1.Instance, removing, gone bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.desired, w.removing, w.gone
}

func (w *worker) member() (network.Member, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ip == nil || w.gone || w.hostNet {
		return network.Member{}, false
	}
	return network.Member{IP: w.ip, Namespace: w.ns, AllowFrom: w.desired.Spec.AllowFrom}, true
}

// report merges a change into the instance status and writes it if it
// differs from what was last written. A write that fails for a passing
// reason (the API server away or restarting) is kept in unsent, to be
// sent again.
func (w *worker) report(ctx context.Context, change func(s *v1.InstanceStatus)) {
	inst, _, gone := w.state()
	if gone {
		w.unsent = nil
		return
	}
	st := w.status
	if w.unsent != nil {
		st = *w.unsent
	}
	change(&st)
	st.Node = w.a.cfg.NodeName
	// ReadySince is when the current unbroken spell of readiness began
	// (a rollout's minReady counts from it): whatever made the
	// instance not ready ends the spell.
	switch {
	case !st.Ready:
		st.ReadySince = nil
	case st.ReadySince == nil:
		t := time.Now().UTC()
		st.ReadySince = &t
	}
	if w.reported && equalJSON(st, w.status) {
		w.unsent = nil
		return
	}
	send := *inst
	send.Status = st
	_, err := w.a.api.UpdateInstanceStatus(ctx, &send)
	if err != nil {
		if errors.Is(err, v1.ErrNotFound) || errors.Is(err, v1.ErrConflict) || errors.Is(err, v1.ErrForbidden) || errors.Is(err, v1.ErrInvalid) {
			// Gone, replaced by a namesake, or not ours: sending it
			// again would not help.
			w.unsent = nil
			return
		}
		if ctx.Err() == nil {
			w.a.log.Warn("report instance status; will retry", "instance", w.key, "err", err)
		}
		w.unsent = &st
		return
	}
	w.status, w.reported, w.unsent = st, true, nil
}

// statusRetry is how soon an undelivered status is sent again.
const statusRetry = 500 * time.Millisecond

func (w *worker) event(ctx context.Context, typ, reason, format string, args ...any) {
	inst, _, _ := w.state()
	w.a.eventf(ctx, inst, typ, reason, format, args...)
}

// wait blocks for d, a wake-up or the end of ctx; it reports whether the
// full time passed.
func (w *worker) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-w.wake:
		return false
	case <-ctx.Done():
		return false
	}
}

// pause waits a back-off out. Only the instance's removal (or the agent
// stopping) cuts it short: the other updates that wake the worker, its
// own status reports coming back through the watch among them, do not,
// or a crashing container would be restarted as fast as its status is
// written. It reports whether the pause ran its course.
func (w *worker) pause(ctx context.Context, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return true
		}
		if w.wait(ctx, left) {
			return true
		}
		if _, removing, _ := w.state(); removing || ctx.Err() != nil {
			return false
		}
	}
}

// restoreSecretFiles writes an adopted container's secret files again.
// Its task bind-mounts them from the node's tmpfs, which may be new since
// the container was made (the first start after they moved off the disk,
// a node whose mounts were lost): without them, the next restart in
// place could not mount its files. They are written in place, over the
// files and directories the running container has mounted (made anew,
// they would be gone from under it). A failure is only logged: the
// container runs on, and a restart that then fails says so.
func (w *worker) restoreSecretFiles(ctx context.Context, inst *v1.Instance) {
	mounts, err := w.a.writeSecretFiles(ctx, inst, false)
	if err == nil {
		err = ownSecretFiles(mounts, w.adopted, inst.Spec.Template.SecurityContext)
	}
	if err != nil && ctx.Err() == nil {
		w.a.log.Warn("could not write the secret files of an adopted instance again; a restart in place may fail", "instance", w.key, "err", err)
	}
}

func (w *worker) run(ctx context.Context) {
	defer close(w.done)
	c, err := w.a.rt.Inspect(ctx, w.id)
	// containerd may be restarting: an unanswered question is not "no
	// container", or a running container would be created again.
	for errors.Is(err, v1.ErrUnavailable) {
		if _, removing, _ := w.state(); removing || ctx.Err() != nil {
			break
		}
		sleep(ctx, 200*time.Millisecond)
		c, err = w.a.rt.Inspect(ctx, w.id)
	}
	adopted, stale := w.found(c, err)
	if adopted {
		w.adopted = c
	}
	if w.status.Finished() && (errors.Is(err, v1.ErrNotFound) || err == nil && !adopted && !stale) {
		// It finished on an earlier run and its container is gone since
		// (gantry down removes containers, not instances), or never ran
		// (its command could not start: the container has no task):
		// finished work is not set up or run again, as it is not when
		// its container is there.
		w.idleUntilRemoved(ctx)
		return
	}
	if stale {
		w.a.rt.Stop(ctx, w.id, 0)
		w.a.rt.Remove(ctx, w.id)
		// Its files too (a drain record among them): this instance
		// starts with none.
		os.RemoveAll(w.a.instanceDir(w.id))
	}
	// A container that exited for good (its restart policy will not run
	// it again) is not set up again: its network was released when it
	// finished, and its host ports may be another instance's by now.
	if !(adopted && w.finishedForGood(c)) {
		switch w.prepare(ctx, adopted) {
		case prepRemoved:
			w.terminate(ctx)
			return
		case prepFailed:
			w.idleUntilRemoved(ctx)
			return
		}
	}
	if !adopted {
		c = runtime.Container{}
	}
	w.supervise(ctx, c)
}

// idleUntilRemoved waits, for a finished instance, until it is to be
// removed, then removes it; meanwhile it only gets a status the API did
// not take through.
func (w *worker) idleUntilRemoved(ctx context.Context) {
	for {
		if _, removing, _ := w.state(); removing {
			w.terminate(ctx)
			return
		}
		d := time.Hour
		if w.unsent != nil {
			d = statusRetry
		}
		if w.wait(ctx, d) && w.unsent != nil {
			w.report(ctx, func(*v1.InstanceStatus) {})
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// finishedForGood reports whether an adopted container's process exited
// and its restart policy will not start it again.
func (w *worker) finishedForGood(c runtime.Container) bool {
	if c.Status != runtime.StatusStopped {
		return false
	}
	inst, _, _ := w.state()
	switch inst.Spec.Template.RestartPolicy {
	case v1.RestartNever:
		return true
	case v1.RestartOnFailure:
		_, byCheck := w.adoptedCheckStop(c)
		return c.ExitCode == 0 && !byCheck || w.status.Finished()
	}
	return false
}

// found decides what run does with what Inspect found under the
// instance's container id (err is Inspect's). A container of this
// instance whose task started once is adopted as it is, running or not.
// One of another instance of the same name (an older one) is stale: run
// removes it. One of this instance with no process (StatusCreated: most
// often a task that never started because the agent stopped between
// creating and starting it, maybe before the network was attached, whose
// repair replaces the namespace the task joined) is set up like a new
// container: Create keeps the container, and any task is owed a drop
// before another is made.
func (w *worker) found(c runtime.Container, err error) (adopt, stale bool) {
	switch {
	case err != nil:
		return false, false
	case c.Labels[labelUID] != w.uid:
		return false, true
	case c.Status == runtime.StatusCreated:
		w.dropTask = true
		return false, false
	}
	return true, false
}

// What prepare came to.
const (
	prepReady   = iota // the container is there, ready to start
	prepRemoved        // the instance is being removed (or the agent stops)
	prepFailed         // it can never run: the instance has failed
)

// prepare pulls the image, attaches the network and creates the
// container, retrying with back-off until it works or the instance goes
// away. A command that cannot be run at all (no such file, not
// executable) fails an instance whose restart policy is never at once,
// as Kubernetes fails its pod with StartError; the others retry.
func (w *worker) prepare(ctx context.Context, adopted bool) int {
	backoff := time.Second
	for attempt := 0; ; attempt++ {
		if _, removing, _ := w.state(); removing || ctx.Err() != nil {
			return prepRemoved
		}
		err := w.setup(ctx, adopted)
		if err == nil {
			return prepReady
		}
		if ctx.Err() != nil {
			return prepRemoved
		}
		reason := "CreateFailed"
		var pe *pullError
		if errors.As(err, &pe) {
			reason = "ErrImagePull"
		}
		msg := w.redact(err.Error())
		if inst, _, _ := w.state(); runtime.CommandNotRunnable(err) && inst.Spec.Template.RestartPolicy == v1.RestartNever {
			w.failStart(ctx, msg)
			return prepFailed
		}
		w.report(ctx, func(s *v1.InstanceStatus) {
			s.Phase, s.Reason, s.Message, s.Ready = v1.PhasePending, reason, fmt.Sprintf("%s (retrying in %s)", msg, backoff), false
		})
		if errors.Is(err, v1.ErrUnavailable) && !errors.As(err, &pe) {
			// The runtime is restarting: retry soon, without backing off.
			w.wait(ctx, 500*time.Millisecond)
			continue
		}
		if attempt == 0 || attempt%5 == 0 {
			w.event(ctx, v1.EventWarning, reason, "%s", msg)
		}
		if w.pause(ctx, backoff) {
			backoff = min(backoff*2, 60*time.Second)
		}
	}
}

// failStart reports an instance whose command could not be started, and
// will not be tried again, as Failed (reason StartError, exit code 128,
// as Kubernetes reports it), with its address given back.
func (w *worker) failStart(ctx context.Context, msg string) {
	code, fin := 128, time.Now().UTC()
	w.finishForGood(ctx, v1.PhaseFailed, reasonStartError, fmt.Sprintf("the command could not be started: %s; restart policy never", msg), func(s *v1.InstanceStatus) {
		s.ExitCode, s.FinishedAt = &code, &fin
	})
	w.event(ctx, v1.EventWarning, reasonStartError, "the command could not be started: %s", msg)
}

// finishForGood reports an instance that never runs again in phase
// (Succeeded or Failed) with reason and msg, and change for anything
// else. Its address and host ports go back to the node first, as a
// finished pod's sandbox or a stopped Docker container's do, before the
// status that says so (the scheduler takes a finished instance without
// an address as holding no host ports).
func (w *worker) finishForGood(ctx context.Context, phase, reason, msg string, change func(*v1.InstanceStatus)) {
	released := w.releaseNetwork(ctx)
	w.report(ctx, func(s *v1.InstanceStatus) {
		s.Phase, s.Ready, s.Reason, s.Message = phase, false, reason, msg
		if change != nil {
			change(s)
		}
		if released {
			s.IP = ""
		}
	})
}

// reasonStartError is the reason of an instance whose command could not
// be started at all.
const reasonStartError = "StartError"

// redact takes the secret values of the container's environment out of
// a runtime's message, which goes into the instance's status and events
// (readable by whoever may read instances, and stored in clear): runc
// quotes NAME=value pairs it refuses. Values shorter than 4 bytes are
// left, as they would blank out ordinary words.
func (w *worker) redact(msg string) string {
	for _, v := range w.secrets {
		if len(v) < 4 {
			continue
		}
		quoted := strconv.Quote(v)
		msg = strings.ReplaceAll(msg, quoted[1:len(quoted)-1], "[secret]")
		msg = strings.ReplaceAll(msg, v, "[secret]")
	}
	return msg
}

type pullError struct{ err error }

func (e *pullError) Error() string { return e.err.Error() }
func (e *pullError) Unwrap() error { return e.err }

// setup does one attempt of what prepare retries. Attaching the network
// and making the container (pulling its image if needed, then its task:
// shim, log driver, runc's create step) are independent, so they run at
// the same time: together they are most of a deploy's latency. The task
// only needs the network namespace to exist, so it waits for that, made
// while the image is checked and the container record written; the
// hosts file with the IP is written, and the isolation rules admit the
// instance, once the attachment is there, before the container starts.
func (w *worker) setup(ctx context.Context, adopted bool) (err error) {
	inst, _, _ := w.state()
	if adopted {
		w.restoreSecretFiles(ctx, inst)
	}
	if sc := inst.Spec.Template.SecurityContext; sc != nil && sc.HostNetwork {
		return w.setupHostNetwork(ctx, inst, adopted)
	}
	start := time.Now()
	var took setupTimes
	var ctrErr error
	var wg sync.WaitGroup
	var netns network.NetNS
	if !adopted {
		nsMade := make(chan struct{})
		var nsErr error
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctrErr = w.createContainer(ctx, inst, &took, func() error {
				<-nsMade
				return nsErr
			})
		}()
		netns, nsErr = w.a.net.PrepareNetNS(ctx, w.id)
		took.netns = time.Since(start)
		close(nsMade)
		if nsErr != nil {
			wg.Wait() // no task was made: createContainer stops before it
			return fmt.Errorf("attach network: %w", nsErr)
		}
		defer func() {
			// A failed attachment is torn down, namespace included; the
			// task made meanwhile may sit in that namespace and must not
			// be the one started after the next attempt. If it cannot be
			// dropped now, the next attempt must drop it first.
			if err != nil {
				w.dropTask = true
				w.dropStaleTask(ctx)
			}
		}()
	}
	netStart := time.Now()
	att, netErr := w.a.net.Setup(ctx, w.id, hostPorts(inst))
	took.network = time.Since(netStart)
	if netErr == nil {
		w.mu.Lock()
		w.ip = att.IP
		w.mu.Unlock()
		// Admit the instance to the isolation rules while the container
		// is made, so it is reachable by its peers before it starts.
		polErr := make(chan error, 1)
		go func() {
			polStart := time.Now()
			err := w.a.applyPolicy(ctx)
			took.policy = time.Since(polStart)
			polErr <- err
		}()
		defer func() {
			perr := <-polErr
			if perr != nil && ctx.Err() == nil {
				w.a.log.Warn("apply network isolation", "instance", w.key, "err", perr)
			}
			// Without br_netfilter bridged traffic bypasses every rule:
			// the instance would reach, and be reached by, every other
			// namespace. It does not start. (Other failures leave it
			// out of the rules, so isolated, until the next apply.)
			if errors.Is(perr, v1.ErrUnsupported) && err == nil {
				err = fmt.Errorf("attach network: %w", perr)
			}
			if err == nil {
				w.a.log.Debug("instance ready to start", "instance", w.key, "took", time.Since(start),
					"netns", took.netns, "image", took.image, "container", took.container, "task", took.task,
					"network", took.network, "policy", took.policy)
			}
		}()
	}
	wg.Wait()
	var pe *pullError
	switch {
	case netErr != nil && (ctrErr == nil || !errors.As(ctrErr, &pe)):
		// The task joins the namespace, so a failed attachment can fail
		// its creation too: the network is the cause to report.
		return fmt.Errorf("attach network: %w", netErr)
	case ctrErr != nil:
		return ctrErr
	}
	if !adopted {
		if err := netns.Unchanged(); err != nil {
			return fmt.Errorf("attach network: %w", err)
		}
	}
	if _, err := w.a.net.WriteHosts(w.a.instanceDir(w.id), inst.Metadata.Name, att.IP); err != nil {
		return fmt.Errorf("write hosts: %w", err)
	}
	return nil
}

// leavePolicy takes the instance out of the policies the agent writes
// from now on, before its address is freed (Teardown), so that no policy
// puts the address back under this instance's namespace. It waits for a
// policy being written: one whose member list still has the address
// would otherwise land after Teardown had dropped it.
func (w *worker) leavePolicy() {
	w.a.polMu.Lock()
	defer w.a.polMu.Unlock()
	w.mu.Lock()
	w.ip, w.hostNet = nil, false
	w.mu.Unlock()
}

// releaseNetwork detaches a finished instance from the node's network,
// and reports whether it has none left. A host-network instance has
// nothing of its own to release.
func (w *worker) releaseNetwork(ctx context.Context) bool {
	w.mu.Lock()
	hostNet := w.hostNet
	w.mu.Unlock()
	if hostNet {
		return false
	}
	w.leavePolicy()
	if err := w.a.net.Teardown(ctx, w.id); err != nil {
		w.a.log.Warn("release the network of a finished instance; it keeps its address until it is deleted", "instance", w.key, "err", err)
		return false
	}
	return true
}

// setupHostNetwork is setup for an instance in the node's network
// namespace: no namespace or interface of its own to attach, and its
// address is the node's, where its probes and the load balancer reach
// it. It is no member of the isolation rules, which filter bridge
// addresses.
func (w *worker) setupHostNetwork(ctx context.Context, inst *v1.Instance, adopted bool) error {
	if !adopted {
		var took setupTimes
		if err := w.createContainer(ctx, inst, &took, func() error { return nil }); err != nil {
			return err
		}
	}
	ip := w.a.hostIP()
	w.mu.Lock()
	w.ip, w.hostNet = ip, true
	w.mu.Unlock()
	if _, err := w.a.net.WriteHosts(w.a.instanceDir(w.id), inst.Metadata.Name, ip); err != nil {
		return fmt.Errorf("write hosts: %w", err)
	}
	return nil
}

// hostIP is the node's address, for instances in its network namespace:
// Config.Address when it is an IP, else loopback (a single node).
func (a *Agent) hostIP() net.IP {
	host := a.cfg.Address
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
		return ip
	}
	return net.IPv4(127, 0, 0, 1)
}

// setupTimes is where one setup spent its time, for the debug log.
type setupTimes struct {
	netns, image, container, task, network, policy time.Duration
}

// createContainer pulls the image if needed, creates the container and,
// once netnsMade says the network namespace it joins is there, its task.
// A container that exists already (an agent restart between create and
// start) is kept.
func (w *worker) createContainer(ctx context.Context, inst *v1.Instance, took *setupTimes, netnsMade func() error) error {
	start := time.Now()
	if _, err := w.a.rt.EnsureImage(ctx, inst.Spec.Image); err != nil {
		if !strings.HasPrefix(err.Error(), "pull ") {
			// Not said by the runtime already.
			err = fmt.Errorf("pull %s: %w", inst.Spec.Image, err)
		}
		return &pullError{err}
	}
	took.image = time.Since(start)
	if took.image > 500*time.Millisecond {
		w.event(ctx, v1.EventNormal, "Pulled", "pulled image %s", inst.Spec.Image)
	}
	start = time.Now()
	spec, secrets, err := w.a.containerSpec(ctx, inst, w.id)
	if err != nil {
		return err
	}
	w.secrets = secrets
	if err := w.a.rt.Create(ctx, spec); err != nil && !errors.Is(err, v1.ErrAlreadyExists) {
		return fmt.Errorf("create container: %w", err)
	}
	took.container = time.Since(start)
	if err := netnsMade(); err != nil {
		return fmt.Errorf("attach network: %w", err)
	}
	start = time.Now()
	if w.dropTask && !w.dropStaleTask(ctx) {
		return errors.New("create task: the task of an earlier attempt could not be dropped (see the agent's log); retrying")
	}
	if err := w.a.rt.CreateTask(ctx, w.id); err != nil {
		return fmt.Errorf("create task: %w", err)
	}
	took.task = time.Since(start)
	return nil
}

// dropStaleTask deletes the task of an earlier setup attempt, which may
// sit in a network namespace that has since been replaced, and reports
// whether none is left. Only the worker's goroutine, or the one setup
// waits for, calls it.
func (w *worker) dropStaleTask(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := w.a.rt.Stop(ctx, w.id, 0); err != nil && !errors.Is(err, v1.ErrNotFound) {
		w.a.log.Warn("drop the task of an earlier setup attempt", "instance", w.key, "err", err)
		return false
	}
	w.dropTask = false
	return true
}

// supervise starts the container (unless it already runs) and keeps it
// running per the restart policy until the instance is removed. adopted
// is the container as the agent found it after a restart (zero for a
// new one): one that runs is watched, and one whose process exited while
// the agent was away is handled like any exit, restart count included.
func (w *worker) supervise(ctx context.Context, adopted runtime.Container) {
	crashes := 0
	running := adopted.Status == runtime.StatusRunning
	if cs, ok := w.adoptedCheckStop(adopted); ok && running {
		w.stopping = &cs
	}
	if adopted.Status == runtime.StatusStopped {
		code, fin := adopted.ExitCode, adopted.ExitedAt.UTC()
		why := exitReason(code, "")
		if cs, ok := w.adoptedCheckStop(adopted); ok {
			// A health check had the agent before this one stop it: a
			// failure, whatever the code.
			why = cs.reason
		}
		// The agent before this one may have seen this exit and counted
		// its restart already (it was waiting out the back-off).
		// The exit is written first (still Running), the restart in the
		// next write (BackOff or Starting): an agent stopped between the
		// two left it uncounted.
		counted := w.status.FinishedAt != nil && w.status.FinishedAt.Equal(fin) && w.status.ExitCode != nil && *w.status.ExitCode == code &&
			w.status.Phase != v1.PhaseRunning
		w.report(ctx, func(s *v1.InstanceStatus) {
			s.ExitCode, s.FinishedAt, s.Ready = &code, &fin, false
		})
		w.exitCounted = counted
		if !w.afterExit(ctx, code, why, time.Time{}, &crashes) {
			return
		}
	}
	for {
		if _, removing, _ := w.state(); removing {
			w.terminate(ctx)
			return
		}
		var startedAt time.Time
		startReady := false
		if running {
			// Adopted after an agent restart: keep serving and keep
			// the readiness already known until a probe says otherwise.
			startReady = w.status.Ready
			startedAt = time.Now()
			if w.status.StartedAt != nil {
				startedAt = *w.status.StartedAt
			}
		} else {
			// A stop recorded from here on is of the run about to start.
			w.clearCheckStop()
			if _, err := w.a.rt.Start(ctx, w.id); err != nil {
				if ctx.Err() != nil {
					return
				}
				msg := w.redact(err.Error())
				w.report(ctx, func(s *v1.InstanceStatus) {
					s.Phase, s.Reason, s.Message, s.Ready = v1.PhaseBackOff, "StartFailed", msg, false
				})
				w.event(ctx, v1.EventWarning, "StartFailed", "start container: %s", msg)
				crashes++
				if !w.pause(ctx, backoffFor(crashes)) && ctx.Err() != nil {
					return
				}
				continue
			}
			startedAt = time.Now().UTC()
			if crashes == 0 {
				w.event(ctx, v1.EventNormal, "Started", "started container %s on node %s", w.id, w.a.cfg.NodeName)
			}
		}
		running = false
		exitCode, why, stop := w.watchRun(ctx, startedAt, startReady)
		if stop {
			return // agent shutting down: leave the container as it is
		}
		if !w.afterExit(ctx, exitCode, why, startedAt, &crashes) {
			return
		}
	}
}

// afterExit applies the restart policy to a process that exited: it
// reports the final phase and waits for the instance's removal if the
// policy says not to restart, or counts the restart and waits out the
// back-off. It returns false when supervise is done.
func (w *worker) afterExit(ctx context.Context, exitCode int, why string, startedAt time.Time, crashes *int) bool {
	if _, removing, _ := w.state(); removing {
		w.terminate(ctx)
		return false
	}
	inst, _, _ := w.state()
	policy := inst.Spec.Template.RestartPolicy
	if time.Since(startedAt) >= backoffReset {
		*crashes = 0
	}
	// A process a liveness or startup check stopped failed, whatever its
	// exit code (one that handles SIGTERM exits 0), as under Kubernetes.
	failed := exitCode != 0 || stoppedByCheck(why)
	restart := policy == v1.RestartAlways || (policy == v1.RestartOnFailure && failed)
	if !restart {
		phase := v1.PhaseSucceeded
		if failed {
			phase = v1.PhaseFailed
		}
		w.finishForGood(ctx, phase, why, fmt.Sprintf("exited with code %d; restart policy %s%s", exitCode, policy, exitHint(why)), nil)
		w.idleUntilRemoved(ctx)
		return false
	}
	*crashes++
	delay := backoffFor(*crashes)
	counted := w.exitCounted
	w.exitCounted = false
	w.report(ctx, func(s *v1.InstanceStatus) {
		if !counted {
			s.Restarts++
		}
		s.Ready = false
		if delay >= time.Second {
			s.Phase, s.Reason = v1.PhaseBackOff, why
			s.Message = fmt.Sprintf("back-off %s restarting container (exit code %d, %s)%s", delay, exitCode, why, exitHint(why))
		} else {
			s.Phase, s.Reason, s.Message = v1.PhaseStarting, why, fmt.Sprintf("restarting (exit code %d, %s)%s", exitCode, why, exitHint(why))
		}
	})
	if delay >= time.Second {
		w.event(ctx, v1.EventWarning, "BackOff", "container exited with code %d (%s); restarting in %s%s", exitCode, why, delay, exitHint(why))
	} else {
		w.event(ctx, v1.EventNormal, "Restarted", "container exited with code %d (%s); restarting%s", exitCode, why, exitHint(why))
	}
	return w.pause(ctx, delay) || ctx.Err() == nil
}

// backoffReset is how long a run must last for the back-off to start
// over at its exit, as the kubelet's 10 minutes: with a shorter one, a
// container that crashes after 20 s of work would restart forever at the
// shortest delays.
const backoffReset = 10 * time.Minute

// backoffFor is the pause before the nth consecutive restart: none for
// the first (a single crash is back within milliseconds), then doubling
// from one second up to a minute.
func backoffFor(n int) time.Duration {
	if n <= 1 {
		return 0
	}
	d := time.Second << (n - 2)
	if d > 60*time.Second || d <= 0 {
		d = 60 * time.Second
	}
	return d
}

// The reasons of exits a health check caused.
const (
	reasonLivenessFailed = "LivenessFailed"
	reasonStartupFailed  = "StartupFailed"
)

// stoppedByCheck reports whether an exit's reason says a health check
// had the agent stop the container.
func stoppedByCheck(reason string) bool {
	return reason == reasonLivenessFailed || reason == reasonStartupFailed
}

// checkOf names the check a reason of stoppedByCheck is about.
func checkOf(reason string) probeKind {
	if reason == reasonStartupFailed {
		return startupProbe
	}
	return livenessProbe
}

// checkStopFile, in the instance's directory, records a stop a failed
// health check began: the instance's UID, the check's reason and when.
// An agent restarted during the grace period finishes that stop and
// counts the exit as the check's. It is removed before the container
// starts again, so a record found always belongs to the container's
// current (or last) run.
const checkStopFile = "check-stop"

// checkStop is a stop a failed health check began.
type checkStop struct {
	reason string
	began  time.Time // zero if not known
}

func (w *worker) checkStopPath() string {
	return filepath.Join(w.a.instanceDir(w.id), checkStopFile)
}

// recordCheckStop writes the record of a stop for reason beginning now.
func (w *worker) recordCheckStop(reason string) {
	path := w.checkStopPath()
	err := os.MkdirAll(filepath.Dir(path), 0o700)
	if err == nil {
		err = os.WriteFile(path, []byte(w.uid+" "+reason+" "+time.Now().UTC().Format(time.RFC3339Nano)+"\n"), 0o600)
	}
	if err != nil {
		w.a.log.Warn("record the stop of a container whose health check failed; a restarted agent would go by the status alone", "instance", w.key, "err", err)
	}
}

// readCheckStop reads the record of recordCheckStop, if it is this
// instance's.
func (w *worker) readCheckStop() (checkStop, bool) {
	b, err := os.ReadFile(w.checkStopPath())
	if err != nil {
		return checkStop{}, false
	}
	f := strings.Fields(string(b))
	if len(f) != 3 || f[0] != w.uid || !stoppedByCheck(f[1]) {
		return checkStop{}, false
	}
	began, _ := time.Parse(time.RFC3339Nano, f[2]) // zero if unreadable
	return checkStop{reason: f[1], began: began}, true
}

// clearCheckStop removes the record of recordCheckStop.
func (w *worker) clearCheckStop() {
	if err := os.Remove(w.checkStopPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		w.a.log.Warn("remove the record of a stop for a failed health check; a restarted agent may stop the container", "instance", w.key, "err", err)
	}
}

// adoptedCheckStop reports whether the container the worker found when
// it started was being stopped, or was stopped, by the agent before this
// one because a health check failed. The record on disk says so, and
// when that stop began. Without one (it could not be written), the
// status written before the stop does: a check's reason and no exit yet,
// or this container's exit; the time is not known then.
func (w *worker) adoptedCheckStop(c runtime.Container) (checkStop, bool) {
	if c.Status != runtime.StatusRunning && c.Status != runtime.StatusStopped {
		return checkStop{}, false
	}
	if cs, ok := w.readCheckStop(); ok {
		return cs, true
	}
	s := w.status
	if !stoppedByCheck(s.Reason) {
		return checkStop{}, false
	}
	if c.Status == runtime.StatusRunning {
		return checkStop{reason: s.Reason}, s.FinishedAt == nil && s.ExitCode == nil
	}
	return checkStop{reason: s.Reason}, s.FinishedAt == nil || s.FinishedAt.Equal(c.ExitedAt.UTC())
}

// exitReason names why a container's process ended: killedBy if the
// agent killed it (a failed liveness check, say), else by its exit code.
func exitReason(code int, killedBy string) string {
	switch {
	case killedBy != "":
		return killedBy
	case code == 0:
		return "Completed"
	case code == 137:
		return "Killed"
	case code == exitSIGSYS:
		return reasonBadSyscall
	}
	return "Error"
}

// A process the seccomp filter stopped dies of SIGSYS.
const (
	exitSIGSYS       = 128 + 31
	reasonBadSyscall = "BadSyscall"
)

// reasonOOMKilled is the reason of an exit by the out-of-memory killer
// (runtime.Exit.OOMKilled), as Kubernetes names it.
const reasonOOMKilled = "OOMKilled"

// memoryLimit is the memory limit inst's container runs with.
func memoryLimit(inst *v1.Instance) v1.Bytes {
	if l := inst.Spec.Template.Resources.MemoryLimit(); l > 0 {
		return l
	}
	return v1.Bytes(runtime.DefaultMemoryLimit)
}

// exitHint is what to add to an exit's message so that its reader knows
// what to do; most exits need none.
func exitHint(why string) string {
	switch why {
	case reasonBadSyscall:
		return "; the seccomp filter refused a system call (SIGSYS): a 32-bit program needs securityContext.allow32Bit: true"
	case reasonOOMKilled:
		return "; it went past its memory limit: raise resources.memory (or resources.limits.memory), or make it use less"
	}
	return ""
}

// rewait waits on the container again after containerd went away. While
// containerd restarts, calls fail as unavailable; its shims keep the
// container, so rewait keeps trying for up to rewaitFor before it takes
// the container for gone.
func (w *worker) rewait(ctx context.Context) (<-chan runtime.Exit, error) {
	deadline := time.Now().Add(rewaitFor)
	for {
		sleep(ctx, 250*time.Millisecond)
		exits, err := w.a.rt.Wait(ctx, w.id)
		if err == nil || ctx.Err() != nil || !errors.Is(err, v1.ErrUnavailable) || time.Now().After(deadline) {
			return exits, err
		}
	}
}

// rewaitFor bounds how long a worker waits for containerd to come back
// (the agent restarts it within seconds).
const rewaitFor = time.Minute

// watchRun follows one run of the container: it reports Running, runs
// the probes, and returns when the process exits (with its code and why)
// or, with stop set, when the agent itself is stopping. A stop the agent
// before this one began for a failed check (w.stopping) is finished.
func (w *worker) watchRun(ctx context.Context, startedAt time.Time, startReady bool) (code int, why string, stop bool) {
	inst, _, _ := w.state()
	resumed := w.stopping
	w.stopping = nil
	if resumed != nil {
		startReady = false // no traffic while it stops
	}
	// The wait is set up while Running is written: both are round trips
	// (to containerd, to the API) on a deploy's critical path. If the
	// container is gone by then, afterExit reports that next.
	type waitResult struct {
		exits <-chan runtime.Exit
		err   error
	}
	waited := make(chan waitResult, 1)
	go func() {
		exits, err := w.a.rt.Wait(ctx, w.id)
		waited <- waitResult{exits, err}
	}()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan probeResult, 8)
	w.mu.Lock()
	ip := w.ip
	w.mu.Unlock()
	health := inst.Spec.Template.Health
	if startReady {
		// Adopted, and ready: its startup check passed before the agent
		// restarted (as the kubelet takes a container that ran before
		// it started as started). Run again, a failing one would hold
		// back the readiness check that could take it out of traffic.
		health.Startup = nil
	}
	go runProbes(runCtx, w.a.rt, w.id, ip, health, startReady, results)
	started := health.Startup == nil
	ready := startReady
	w.report(ctx, func(s *v1.InstanceStatus) {
		switch {
		case resumed != nil:
			// What the agent before this one wrote when the check
			// failed stays while the stop goes on.
			if s.Reason != resumed.reason || s.Message == "" {
				s.Reason, s.Message = resumed.reason, fmt.Sprintf("%s check failed; stopping the container", checkOf(resumed.reason))
			}
			if s.Phase != v1.PhaseStarting {
				s.Phase = v1.PhaseRunning
			}
		case started:
			s.Phase, s.Reason, s.Message = v1.PhaseRunning, "", ""
		default:
			s.Phase, s.Reason, s.Message = v1.PhaseStarting, "", "waiting for the startup check"
		}
		s.IP = ip.String()
		s.Ready = ready
		t := startedAt.UTC()
		s.StartedAt = &t
		s.ExitCode = nil
		s.FinishedAt = nil
		if inst.Spec.Image != "" {
			s.ImageDigest = digestOf(inst.Spec.Image)
		}
	})
	wr := <-waited
	if errors.Is(wr.err, v1.ErrUnavailable) && ctx.Err() == nil {
		// containerd is restarting: the process may well run on.
		wr.exits, wr.err = w.rewait(ctx)
	}
	if wr.err != nil {
		return -1, "ContainerGone", ctx.Err() != nil
	}
	exits := wr.exits
	killedBy := ""
	stopFailed := make(chan error, 1)
	// stopping is closed when a stop for a failed check, begun in this
	// run, is done (nil if none began).
	var stopping <-chan struct{}
	if resumed != nil {
		// The agent before this one sent SIGTERM and stopped before the
		// grace period ended: SIGKILL is still owed, after what is left
		// of it (all of it if when it began is not known).
		killedBy = resumed.reason
		grace := stopGrace(inst)
		if !resumed.began.IsZero() {
			grace = graceLeft(grace, time.Since(resumed.began))
		}
		w.a.log.Info("finishing the stop of a container whose health check failed", "instance", w.key, "reason", killedBy, "grace", grace)
		stopping = w.stopForCheck(runCtx, grace, stopFailed)
	}
	for {
		var resend <-chan time.Time
		if w.unsent != nil {
			resend = time.After(statusRetry)
		}
		select {
		case <-ctx.Done():
			return 0, "", true
		case <-resend:
			w.report(ctx, func(*v1.InstanceStatus) {})
		case err := <-stopFailed:
			// It runs on: the check's next failure tries again.
			check := checkOf(killedBy)
			killedBy = ""
			w.clearCheckStop()
			w.report(ctx, func(s *v1.InstanceStatus) {
				s.Ready, s.Reason = ready, ""
				s.Message = fmt.Sprintf("%s check failed but the container could not be stopped: %v; trying again at the check's next failure", check, err)
			})
		case e := <-exits:
			if e.Err != nil {
				if ctx.Err() != nil {
					return 0, "", true
				}
				// containerd went away; wait again once it is back.
				w.a.log.Debug("lost the wait on the container; waiting again", "instance", w.key, "err", e.Err)
				var err error
				if exits, err = w.rewait(ctx); err != nil {
					if ctx.Err() != nil {
						return 0, "", true
					}
					w.a.log.Info("container gone after containerd came back", "instance", w.key, "err", err)
					return -1, "ContainerGone", false
				}
				continue
			}
			if stopping != nil {
				// The exit may be the stop's own doing: it deletes the
				// task next, and a start before it is done would find
				// the task there still.
				select {
				case <-stopping:
				case <-ctx.Done():
					return 0, "", true
				}
			}
			reason := exitReason(e.Code, killedBy)
			if e.OOMKilled && killedBy == "" {
				reason = reasonOOMKilled
				w.event(ctx, v1.EventWarning, reasonOOMKilled, "the kernel killed the container's process: it went past its memory limit of %s", memoryLimit(inst))
			}
			fin := e.At.UTC()
			code := e.Code
			w.report(ctx, func(s *v1.InstanceStatus) {
				s.ExitCode, s.FinishedAt, s.Ready = &code, &fin, false
			})
			return e.Code, reason, false
		case r := <-results:
			if len(exits) > 0 {
				// The process has ended already (select picks either
				// of two ready cases at random): the result is about a
				// run that is over, and the exit, taken next, ends it.
				// Without it, a container that exits at once could be
				// reported ready, which a rollout counts as progress.
				continue
			}
			switch r.kind {
			case startupProbe:
				if r.ok {
					started = true
					w.report(ctx, func(s *v1.InstanceStatus) {
						s.Phase = v1.PhaseRunning
						if killedBy == "" {
							s.Message = ""
						}
					})
				} else if killedBy == "" {
					// As under the kubelet: a container that does not
					// start within failureThreshold periods is stopped
					// and handled by its restart policy.
					killedBy = reasonStartupFailed
					w.event(ctx, v1.EventWarning, "Unhealthy", "startup check failed: %s; restarting", r.msg)
					stopping = w.beginCheckStop(ctx, runCtx, killedBy, r.msg, stopGrace(inst), stopFailed)
				}
			case readinessProbe:
				if r.ok && !ready && killedBy == "" {
					w.event(ctx, v1.EventNormal, "Ready", "instance %s is ready and gets traffic", w.name)
				}
				ready = r.ok
				msg := ""
				if !r.ok {
					msg = "readiness check failing: " + r.msg
					w.event(ctx, v1.EventWarning, "Unhealthy", "readiness check failed: %s", r.msg)
				}
				// A container being stopped gets no traffic, and its
				// status keeps saying why it is stopped.
				w.report(ctx, func(s *v1.InstanceStatus) {
					s.Ready = r.ok && killedBy == ""
					if killedBy == "" {
						s.Message = msg
					}
				})
			case livenessProbe:
				// The check reports again after each failureThreshold
				// failures: if the last stop failed, this is another try.
				if !r.ok && killedBy == "" {
					killedBy = reasonLivenessFailed
					w.event(ctx, v1.EventWarning, "Unhealthy", "liveness check failed: %s; restarting", r.msg)
					stopping = w.beginCheckStop(ctx, runCtx, killedBy, r.msg, stopGrace(inst), stopFailed)
				}
			}
		case <-w.wake:
			if _, removing, _ := w.state(); removing {
				return 0, "Removed", false
			}
		}
	}
}

// beginCheckStop stops the container because a health check failed
// (reason says which) with msg. The status says so first, as the stop
// may take the whole grace period; the record on disk lets an agent
// restarted meanwhile finish the stop.
func (w *worker) beginCheckStop(ctx, runCtx context.Context, reason, msg string, grace time.Duration, failed chan<- error) <-chan struct{} {
	w.report(ctx, func(s *v1.InstanceStatus) {
		s.Ready, s.Reason = false, reason
		s.Message = fmt.Sprintf("%s check failed: %s; stopping the container (SIGTERM, then SIGKILL after %s)", checkOf(reason), msg, grace)
	})
	w.recordCheckStop(reason)
	return w.stopForCheck(runCtx, grace, failed)
}

// stopForCheck stops the container of the run runCtx belongs to because
// a health check failed. containerd may be restarting: it tries for as
// long as a wait on it is tried again, but only while this run lasts (a
// retry after it ended would stop the next one). If the container could
// not be stopped it signals failed, so that an exit for another reason
// later is not put down to the check and the check's next report tries
// again.
//
// The returned channel is closed when it is done: the run must not end
// (and start again) before, or its start would race the stop's delete of
// the task.
func (w *worker) stopForCheck(runCtx context.Context, grace time.Duration, failed chan<- error) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		deadline := time.Now().Add(rewaitFor)
		for {
			err := w.a.rt.Stop(runCtx, w.id, grace)
			if err == nil || runCtx.Err() != nil {
				return
			}
			if !errors.Is(err, v1.ErrUnavailable) || time.Now().After(deadline) {
				w.a.log.Warn("stop a container whose health check failed", "instance", w.key, "err", err)
				select {
				case failed <- err:
				default:
				}
				return
			}
			sleep(runCtx, 500*time.Millisecond)
		}
	}()
	return done
}

func stopGrace(i *v1.Instance) time.Duration {
	if g := i.Spec.Template.StopGracePeriod; g != nil {
		return g.D()
	}
	return v1.DefaultStopGracePeriod.D()
}

func digestOf(ref string) string {
	for i := len(ref) - 1; i > 0; i-- {
		if ref[i] == '@' {
			return ref[i+1:]
		}
	}
	return ""
}

// drainFile, in the instance's directory, holds when its drain began,
// after the UID of the instance that began it.
const drainFile = "drain-started"

// drainDeadline is when the instance's drain ends: delay after it began.
// The start is kept on disk, so that an agent restarted in the middle of
// a drain finishes that drain rather than starting another from zero
// (which would hold a retired instance, and its node's capacity, for the
// whole delay again after every restart). A record of another instance
// of the same name, or a start in the future (the clock was set back),
// does not count.
func (w *worker) drainDeadline(delay time.Duration) time.Time {
	now := time.Now()
	path := filepath.Join(w.a.instanceDir(w.id), drainFile)
	if began, ok := w.drainStart(path); ok && !began.After(now) {
		return began.Add(delay)
	}
	err := os.MkdirAll(filepath.Dir(path), 0o700)
	if err == nil {
		err = os.WriteFile(path, []byte(w.uid+" "+now.UTC().Format(time.RFC3339Nano)+"\n"), 0o600)
	}
	if err != nil {
		w.a.log.Warn("record the start of a drain; a restarted agent would drain again from zero", "instance", w.key, "err", err)
	}
	return now.Add(delay)
}

// drainStart reads the drain record at path, if it is this instance's.
func (w *worker) drainStart(path string) (time.Time, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return time.Time{}, false
	}
	uid, at, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
	if uid != w.uid {
		return time.Time{}, false
	}
	began, err := time.Parse(time.RFC3339Nano, at)
	return began, err == nil
}

// removeFiles removes what the agent kept for the instance on disk, but
// for its drain record while the instance object exists: an agent
// restarted before the object is gone must not drain again.
func (w *worker) removeFiles() {
	dir := w.a.instanceDir(w.id)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != drainFile {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
	os.RemoveAll(w.a.secretDir(w.id))
}

// removeDrainRecord removes the instance's drain record and its
// directory, once the object is gone. The directory stays if it has
// anything else: a new instance of the same name may already use it.
func (w *worker) removeDrainRecord() {
	dir := w.a.instanceDir(w.id)
	path := filepath.Join(dir, drainFile)
	if _, ours := w.drainStart(path); ours {
		os.Remove(path)
	}
	os.Remove(dir)
}

// mayServe reports whether the instance, as last reported, may have a
// process with requests in flight: one with an address whose phase is
// not before its first start or after its process ended. Only those
// are drained (an image that never pulled, a crash-looping or finished
// process would hold their slot for drainDelay, up to an hour, for
// nothing).
func (w *worker) mayServe() bool {
	if w.status.IP == "" {
		return false
	}
	switch w.status.Phase {
	case v1.PhasePending, v1.PhasePulling, v1.PhaseBackOff, v1.PhaseSucceeded, v1.PhaseFailed:
		return false
	case v1.PhaseTerminating:
		return w.status.Reason != reasonStopping // an agent before this one found no drain due
	}
	return true
}

// reasonStopping is the reason of a Terminating instance that is not
// drained.
const reasonStopping = "Stopping"

// reasonKilling is the reason of a Terminating instance that was drained
// and has been sent SIGTERM.
const reasonKilling = "Killing"

// graceLeft is what remains of a grace period that began elapsed ago: at
// least a second (or the whole period, if shorter), so that a process
// whose SIGTERM an earlier agent may never have sent still hears one.
func graceLeft(grace, elapsed time.Duration) time.Duration {
	if elapsed <= 0 {
		return grace
	}
	return max(grace-elapsed, min(grace, time.Second))
}

// terminate drains and stops the instance and removes everything it had:
// container, snapshot, network, files, and finally the instance object.
func (w *worker) terminate(ctx context.Context) {
	inst, _, gone := w.state()
	grace := stopGrace(inst)
	drained := false
	if !gone && !w.mayServe() {
		w.report(ctx, func(s *v1.InstanceStatus) {
			s.Phase, s.Ready, s.Reason, s.Message = v1.PhaseTerminating, false, reasonStopping, "stopping (no process that could have had traffic: no drain)"
		})
	} else if !gone {
		w.report(ctx, func(s *v1.InstanceStatus) {
			s.Phase, s.Ready, s.Reason, s.Message = v1.PhaseTerminating, false, "Draining", "draining before stop"
		})
		// The load balancer and DNS dropped the instance when it was
		// marked for deletion; in-flight requests get DrainDelay to
		// finish before the process hears SIGTERM.
		deadline := w.drainDeadline(inst.Spec.DrainDelay.D())
		for time.Now().Before(deadline) {
			if _, _, gone := w.state(); gone || ctx.Err() != nil {
				break
			}
			w.wait(ctx, time.Until(deadline))
		}
		// An agent restarted after the drain ended, while the process
		// had its grace period, gives it what is left of it rather
		// than all of it again (up to an hour each restart). In whole
		// seconds: the microseconds since the drain ended just now are
		// not worth a "SIGKILL after 9.999661s".
		grace = graceLeft(grace, time.Since(deadline).Truncate(time.Second))
		drained = true
	}
	if ctx.Err() != nil {
		return // the agent is stopping; the next one finishes the job
	}
	if !gone {
		w.event(ctx, v1.EventNormal, "Killing", "stopping container (SIGTERM, then SIGKILL after %s)", grace)
	}
	if drained {
		// The drain is over: the status says what the process is waiting
		// for now, or a process that ignores SIGTERM would look as if
		// the load balancer still drained it. (Not reasonStopping: an
		// agent restarted now must still count the grace period from
		// the drain's end.)
		// Bounded: an API server that is slow to answer must not hold
		// the SIGTERM back (an unsent status goes again later).
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		w.report(rctx, func(s *v1.InstanceStatus) {
			s.Reason, s.Message = reasonKilling, fmt.Sprintf("stopping: SIGTERM, then SIGKILL after %s if it has not exited", grace)
		})
		cancel()
	}
	// While containerd is away (restarting), the container may still
	// run: wait for it to come back rather than tear down the network
	// and delete the object of a live process.
	stop := func() error { return w.a.rt.Stop(ctx, w.id, grace) }
	if err := retry(ctx, w.a.log, "stop container", stop, isUnavailable, "instance", w.key); err != nil && !errors.Is(err, v1.ErrNotFound) {
		if ctx.Err() != nil {
			return
		}
		w.a.log.Warn("stop container", "instance", w.key, "err", err)
	}
	remove := func() error { return w.a.rt.Remove(ctx, w.id) }
	if err := retry(ctx, w.a.log, "remove container", remove, isUnavailable, "instance", w.key); err != nil && !errors.Is(err, v1.ErrNotFound) {
		if ctx.Err() != nil {
			return
		}
		w.a.log.Warn("remove container", "instance", w.key, "err", err)
	}
	w.leavePolicy()
	if err := w.a.net.Teardown(ctx, w.id); err != nil {
		w.a.log.Warn("detach network", "instance", w.key, "err", err)
	}
	w.removeFiles()
	if _, _, gone := w.state(); !gone {
		// Nothing else deletes the object: keep asking until it is
		// gone or the agent stops (the next one finishes the job).
		del := func() error {
			_, err := w.a.api.Delete(ctx, "Instance", w.ns, w.name)
			return err
		}
		notGone := func(err error) bool { return !errors.Is(err, v1.ErrNotFound) }
		if err := retry(ctx, w.a.log, "remove instance object", del, notGone, "instance", w.key); err != nil && !errors.Is(err, v1.ErrNotFound) {
			w.a.log.Warn("remove instance object", "instance", w.key, "err", err)
			return
		}
	}
	w.removeDrainRecord()
}

func isUnavailable(err error) bool { return errors.Is(err, v1.ErrUnavailable) }

// retry calls fn until it succeeds or fails with an error for which again
// is false, backing off from 100ms to 5s, or until ctx ends; each retry
// is logged as what, with attrs.
func retry(ctx context.Context, log *slog.Logger, what string, fn func() error, again func(error) bool, attrs ...any) error {
	backoff := 100 * time.Millisecond
	for {
		err := fn()
		if err == nil || !again(err) || ctx.Err() != nil {
			return err
		}
		log.Warn(what+"; retrying", append(attrs, "in", backoff, "err", err)...)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
