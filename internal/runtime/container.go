package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	cgroup1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	cgroup2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	"github.com/containerd/typeurl/v2"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/logfile"
)

// Status of a container as List reports it.
type Status string

const (
	// StatusCreated: the container exists and no process of it is
	// running or waiting to be reaped: it never started, or Stop ended
	// and cleaned up its last run.
	StatusCreated Status = "created"
	// StatusRunning: its main process runs (or is paused).
	StatusRunning Status = "running"
	// StatusStopped: its main process exited and the exit code is known;
	// Start runs it again in place.
	StatusStopped Status = "stopped"
)

// Container is what List reports of one container.
type Container struct {
	ID       string
	Labels   map[string]string // the spec's labels, without the runtime's own
	Image    string
	Status   Status
	Pid      uint32 // of the main process while it runs
	ExitCode int    // when StatusStopped
	ExitedAt time.Time
	LogPath  string
	Created  time.Time
	// UID and GID are the user the process runs as, when HasUser (not
	// for containers made before the runtime recorded it).
	UID, GID uint32
	HasUser  bool
}

// Exit is how a container's main process ended.
type Exit struct {
	Code int
	At   time.Time
	// OOMKilled says that the process died of SIGKILL and the kernel's
	// out-of-memory killer killed a process of the container's cgroup in
	// this run: it went past its memory limit.
	OOMKilled bool
	// Err is set when the wait itself failed (containerd went away or ctx
	// ended): the process may still be running, and the caller should
	// Wait again once containerd is back.
	Err error
}

// Create makes the container and its writable snapshot, pulling the image
// if needed. It does not start it. A container with this ID must not
// exist (v1.ErrAlreadyExists).
func (d *Driver) Create(ctx context.Context, spec *ContainerSpec) error {
	if err := spec.validate(); err != nil {
		return err
	}
	if spec.LogPath != "" && len(d.cfg.LogDriver) == 0 {
		return fmt.Errorf("create %s: the spec has a log file but the runtime has no log driver configured: %w", spec.ID, v1.ErrInvalid)
	}
	info, img, err := d.ensureImage(ctx, spec.Image)
	if err != nil {
		return err
	}
	ctx = d.ns(ctx)
	unlock := d.locks.lock(spec.ID)
	defer unlock()

	labels := make(map[string]string, len(spec.Labels)+1)
	for k, v := range spec.Labels {
		if !strings.HasPrefix(k, labelPrefix) {
			labels[k] = v
		}
	}
	if spec.LogPath != "" {
		lc := logfile.DriverConfig{Path: spec.LogPath, MaxSize: spec.LogMaxSize, MaxFiles: spec.LogMaxFiles}
		if lc.MaxSize == 0 {
			lc.MaxSize = d.cfg.DefaultLogMaxSize
		}
		if lc.MaxFiles == 0 {
			lc.MaxFiles = d.cfg.DefaultLogMaxFiles
		}
		labels[labelLog] = lc.Arg()
	}

	newContainer := func() error {
		_, err := d.client.NewContainer(ctx, spec.ID,
			client.WithImageName(info.Ref),
			client.WithSnapshotter(d.cfg.Snapshotter),
			client.WithNewSnapshot(spec.ID, img),
			client.WithRuntime(runcRuntime, nil),
			client.WithContainerLabels(labels),
			client.WithNewSpec(d.specOpts(spec, info, img)...),
		)
		return err
	}
	err = newContainer()
	if errdefs.IsAlreadyExists(err) {
		// Either the container exists, or a create that died halfway
		// (agent killed) left its snapshot behind: that one is ours to
		// clear and reuse. Looking only now keeps the common case to one
		// round trip.
		if _, lerr := d.client.LoadContainer(ctx, spec.ID); lerr == nil {
			return fmt.Errorf("create %s: container exists: %w", spec.ID, v1.ErrAlreadyExists)
		} else if !errdefs.IsNotFound(lerr) {
			// Not known to be gone (containerd restarting): its
			// snapshot may be a live container's.
			return fmt.Errorf("create %s: %w", spec.ID, kindOf(lerr))
		}
		d.removeSnapshot(ctx, spec.ID)
		err = newContainer()
	}
	if err != nil {
		if !errdefs.IsAlreadyExists(err) {
			d.removeSnapshot(ctx, spec.ID)
		}
		return fmt.Errorf("create %s: %w", spec.ID, kindOf(err))
	}
	return nil
}

func (d *Driver) removeSnapshot(ctx context.Context, key string) {
	sn := d.client.SnapshotService(d.cfg.Snapshotter)
	if err := sn.Remove(ctx, key); err != nil && !errdefs.IsNotFound(err) {
		d.log.Warn("remove snapshot", "key", key, "err", err)
	}
}

// CreateTask makes the container's process without starting it: the
// shim, the log driver and runc's create step, which joins the network
// namespace the spec names (it must exist) and sets up the mounts. Start
// then only has to run it. A task that is created or running already is
// kept; the task of a run that ended is replaced. The agent creates the
// task while the network is being attached, which takes most of a
// deploy's time off the critical path.
func (d *Driver) CreateTask(ctx context.Context, id string) error {
	ctx = d.ns(ctx)
	unlock := d.locks.lock(id)
	defer unlock()
	if _, _, err := d.task(ctx, id); err != nil {
		return fmt.Errorf("%s: %w", id, err) // task's errors say what failed
	}
	return nil
}

// Start runs the container's main process, creating its task first unless
// CreateTask did, and returns its pid. A container that runs already is
// left as it is. If its process exited, Start deletes that run and starts
// a new one in the same container and filesystem: that is how a restart
// policy restarts in place.
func (d *Driver) Start(ctx context.Context, id string) (uint32, error) {
	ctx = d.ns(ctx)
	unlock := d.locks.lock(id)
	defer unlock()
	t, st, err := d.task(ctx, id)
	if err != nil {
		return 0, fmt.Errorf("start %s: %w", id, err)
	}
	if st != client.Created {
		return t.Pid(), nil // running or paused
	}
	if err := t.Start(ctx); err != nil {
		if _, derr := t.Delete(ctx, client.WithProcessKill); derr != nil {
			d.log.Warn("clean up a task that failed to start", "id", id, "err", derr)
		}
		return 0, fmt.Errorf("start %s: %w", id, kindOf(err))
	}
	return t.Pid(), nil
}

// task returns the container's live task and its status, creating the
// task if there is none or the last one ended. The caller holds the
// container's lock.
func (d *Driver) task(ctx context.Context, id string) (client.Task, client.ProcessStatus, error) {
	c, err := d.client.LoadContainer(ctx, id)
	if err != nil {
		return nil, "", kindOf(err)
	}
	if t, err := c.Task(ctx, nil); err == nil {
		st, err := t.Status(ctx)
		if err != nil {
			return nil, "", fmt.Errorf("task status: %w", kindOf(err))
		}
		switch st.Status {
		case client.Running, client.Paused, client.Pausing, client.Created:
			return t, st.Status, nil
		case client.Unknown:
			// It may run: not a previous run to delete.
			return nil, "", fmt.Errorf("task status: the shim did not answer: %w", v1.ErrUnavailable)
		default:
			if _, err := t.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
				return nil, "", fmt.Errorf("delete the previous run: %w", kindOf(err))
			}
		}
	} else if !errdefs.IsNotFound(err) {
		return nil, "", fmt.Errorf("load task: %w", kindOf(err))
	}
	labels, err := c.Labels(ctx)
	if err != nil {
		return nil, "", kindOf(err)
	}
	if err := d.fitOpenFiles(ctx, c, labels[labelOpenFiles]); err != nil {
		return nil, "", err
	}
	ioc, err := d.logIO(labels[labelLog])
	if err != nil {
		return nil, "", err
	}
	t, err := c.NewTask(ctx, ioc)
	if err != nil {
		return nil, "", fmt.Errorf("create task: %w", kindOf(err))
	}
	return t, client.Created, nil
}

// fitOpenFiles lowers the hard limit of open files in c's spec (stored,
// as labelOpenFiles says, when it was made) to the one runc runs with now,
// if that is lower: containerd restarted with other limits than the one
// that made c (an adopted one), and runc may not raise its own.
func (d *Driver) fitOpenFiles(ctx context.Context, c client.Container, stored string) error {
	had, err := strconv.ParseUint(stored, 10, 64)
	if err != nil {
		return nil // none set: containerd's default
	}
	now := d.openFiles()
	if now == 0 || now >= had {
		return nil
	}
	err = c.Update(ctx, func(ctx context.Context, cl *client.Client, ci *containers.Container) error {
		var s oci.Spec
		if err := json.Unmarshal(ci.Spec.GetValue(), &s); err != nil {
			return fmt.Errorf("read spec: %w", err)
		}
		if err := withOpenFiles(now)(ctx, cl, ci, &s); err != nil {
			return err
		}
		return client.WithSpec(&s)(ctx, cl, ci)
	})
	if err != nil {
		return fmt.Errorf("lower the open files limit of %s to %d: %w", c.ID(), now, kindOf(err))
	}
	d.log.Info("lowered a container's open files limit to containerd's", "id", c.ID(), "from", had, "to", now)
	return nil
}

// logIO returns the task IO for a container's log settings: the binary
// log driver when the container has a log file, nothing otherwise.
func (d *Driver) logIO(arg string) (cio.Creator, error) {
	if arg == "" {
		return cio.NullIO, nil
	}
	if len(d.cfg.LogDriver) == 0 {
		return nil, fmt.Errorf("container has a log file but the runtime has no log driver configured: %w", v1.ErrInvalid)
	}
	lc, err := logfile.ParseDriverConfig(arg)
	if err != nil {
		return nil, err
	}
	// Fail here, with a message, rather than in the driver, whose errors
	// nobody sees.
	if err := os.MkdirAll(filepath.Dir(lc.Path), 0o755); err != nil {
		return nil, fmt.Errorf("log directory: %w", err)
	}
	f, err := os.OpenFile(lc.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	f.Close()
	// The shim turns the URI's query into arguments, key then value.
	key := "--config"
	if len(d.cfg.LogDriver) == 2 {
		key = d.cfg.LogDriver[1]
	}
	return cio.BinaryIO(d.cfg.LogDriver[0], map[string]string{key: arg}), nil
}

// Wait returns a channel that receives how the container's current run
// ends, then closes. It works on containers started by another process
// (an agent before its restart): output goes to the log driver, so there
// is no IO to re-attach. A run that already ended is reported at once.
func (d *Driver) Wait(ctx context.Context, id string) (<-chan Exit, error) {
	ctx = d.ns(ctx)
	c, err := d.client.LoadContainer(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("wait %s: %w", id, kindOf(err))
	}
	t, err := c.Task(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("wait %s: not started: %w", id, kindOf(err))
	}
	ch, err := t.Wait(ctx)
	if err != nil {
		return nil, fmt.Errorf("wait %s: %w", id, kindOf(err))
	}
	out := make(chan Exit, 1)
	go func() {
		defer close(out)
		st, ok := <-ch
		if !ok {
			out <- Exit{Err: fmt.Errorf("wait %s: %w", id, v1.ErrUnavailable)}
			return
		}
		code, at, err := st.Result()
		if err != nil {
			out <- Exit{Err: fmt.Errorf("wait %s: %w", id, kindOf(err))}
			return
		}
		ex := Exit{Code: int(code), At: at}
		if code == 128+uint32(syscall.SIGKILL) {
			ex.OOMKilled = d.oomKilled(ctx, t)
		}
		out <- ex
	}()
	return out, nil
}

// oomKilled reports whether the out-of-memory killer has killed a process
// in the cgroup of task t, whose process has exited (its cgroup stays
// until the task is deleted). An error reading it is taken for no.
func (d *Driver) oomKilled(ctx context.Context, t client.Task) bool {
	m, err := t.Metrics(ctx)
	if err != nil {
		d.log.Debug("read the OOM kill count of an exited task", "id", t.ID(), "err", err)
		return false
	}
	data, err := typeurl.UnmarshalAny(m.Data)
	if err != nil {
		return false
	}
	switch v := data.(type) {
	case *cgroup1.Metrics:
		return v.GetMemoryOomControl().GetOomKill() > 0
	case *cgroup2.Metrics:
		return v.GetMemoryEvents().GetOomKill() > 0
	}
	return false
}

// Stop sends SIGTERM to the container's main process, SIGKILL after grace
// if it still runs, and deletes the run. The container and its filesystem
// stay (Start runs it again). Stopping a container that does not run is
// not an error.
func (d *Driver) Stop(ctx context.Context, id string, grace time.Duration) error {
	ctx = d.ns(ctx)
	unlock := d.locks.lock(id)
	defer unlock()
	c, err := d.client.LoadContainer(ctx, id)
	if err != nil {
		return fmt.Errorf("stop %s: %w", id, kindOf(err))
	}
	return d.stop(ctx, c, grace)
}

func (d *Driver) stop(ctx context.Context, c client.Container, grace time.Duration) error {
	id := c.ID()
	t, err := c.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stop %s: %w", id, kindOf(err))
	}
	st, err := t.Status(ctx)
	if err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("stop %s: %w", id, kindOf(err))
	}
	if st.Status != client.Stopped {
		if st.Status == client.Paused {
			_ = t.Resume(ctx) // a paused process cannot act on SIGTERM
		}
		exited := false
		if grace > 0 && st.Status != client.Created {
			if err := t.Kill(ctx, syscall.SIGTERM); err != nil && !errdefs.IsNotFound(err) {
				return fmt.Errorf("stop %s: SIGTERM: %w", id, kindOf(err))
			}
			if _, exited, err = awaitExit(ctx, t, nil, time.Now().Add(grace)); err != nil {
				return fmt.Errorf("stop %s: wait: %w", id, err)
			}
		}
		if !exited {
			if err := t.Kill(ctx, syscall.SIGKILL); err != nil && !errdefs.IsNotFound(err) {
				return fmt.Errorf("stop %s: SIGKILL: %w", id, kindOf(err))
			}
			if _, _, err := awaitExit(ctx, t, nil, time.Time{}); err != nil {
				return fmt.Errorf("stop %s: wait: %w", id, err)
			}
		}
	}
	// Once begun, the delete is not cut short by the caller's context
	// (its run ending, its instance deleted): containerd, interrupted in
	// it, was left with the task registered and its shim gone, and every
	// later start of the container failed with "already exists".
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), taskDeleteTimeout)
	defer cancel()
	if _, err := t.Delete(dctx); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("stop %s: delete task: %w", id, kindOf(err))
	}
	return nil
}

// CommandNotRunnable reports whether err says that the container's command
// cannot be run at all: runc found no such file, or one it may not or
// cannot execute. Another try fails the same way; Kubernetes calls it a
// StartError, Docker exits 127 or 126.
func CommandNotRunnable(err error) bool {
	if err == nil {
		return false
	}
	// runc's words for the container's own process; not a shim or
	// runc binary of the node's that cannot be run.
	msg := err.Error()
	if !strings.Contains(msg, "unable to start container process: exec: ") && // runc 1.1 and later
		!strings.Contains(msg, "starting container process caused: exec: ") { // runc 1.0
		return false
	}
	for _, cause := range []string{"no such file or directory", "permission denied", "exec format error", "executable file not found", "is a directory", "not a directory"} {
		if strings.Contains(msg, cause) {
			return true
		}
	}
	return false
}

// taskDeleteTimeout bounds the delete of a stopped task, which goes on
// after its caller's context has ended.
const taskDeleteTimeout = 30 * time.Second

// awaitExit waits for process p to exit until the deadline (zero: for as
// long as ctx lasts), and returns its exit status and whether it exited.
// first, when not nil, is a wait made already (before p started). A wait
// that breaks (containerd restarting: its shim keeps the process) is made
// again, so that the process is neither killed before its grace period is
// over nor taken for gone; one that cannot be made again, or that keeps
// breaking (for about two seconds), is the error: the caller tries again,
// or ends the process.
func awaitExit(ctx context.Context, p client.Process, first <-chan client.ExitStatus, deadline time.Time) (client.ExitStatus, bool, error) {
	var timeout <-chan time.Time
	if !deadline.IsZero() {
		timer := time.NewTimer(time.Until(deadline))
		defer timer.Stop()
		timeout = timer.C
	}
	exited := first
	for broken := 0; ; broken++ {
		if exited == nil {
			var err error
			if exited, err = p.Wait(ctx); err != nil {
				return client.ExitStatus{}, false, kindOf(err)
			}
		}
		select {
		case es := <-exited:
			if es.Error() == nil {
				return es, true, nil
			}
			if err := kindOf(es.Error()); !errors.Is(err, v1.ErrUnavailable) || broken == 20 {
				return client.ExitStatus{}, false, err
			}
			exited = nil
			select { // containerd is coming back: wait on it again
			case <-time.After(100 * time.Millisecond):
			case <-timeout:
				return client.ExitStatus{}, false, nil
			case <-ctx.Done():
				return client.ExitStatus{}, false, ctx.Err()
			}
		case <-timeout:
			return client.ExitStatus{}, false, nil
		case <-ctx.Done():
			return client.ExitStatus{}, false, ctx.Err()
		}
	}
}

// Remove kills the container if it runs, then deletes it and its
// snapshot. Removing a container that does not exist is not an error. The
// log file stays: the agent decides when logs go.
func (d *Driver) Remove(ctx context.Context, id string) error {
	ctx = d.ns(ctx)
	unlock := d.locks.lock(id)
	defer unlock()
	c, err := d.client.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		d.removeSnapshot(ctx, id)
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove %s: %w", id, kindOf(err))
	}
	if err := d.stop(ctx, c, 0); err != nil {
		return fmt.Errorf("remove %s: %w", id, err)
	}
	if err := c.Delete(ctx, client.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("remove %s: %w", id, kindOf(err))
	}
	return nil
}

// List reports every container in the driver's namespace.
func (d *Driver) List(ctx context.Context) ([]Container, error) {
	ctx = d.ns(ctx)
	cs, err := d.client.Containers(ctx)
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", kindOf(err))
	}
	out := make([]Container, 0, len(cs))
	for _, c := range cs {
		ct, err := d.describe(ctx, c)
		if errdefs.IsNotFound(err) {
			continue // removed while we listed
		}
		if errors.Is(err, errShimSilent) {
			// One stuck shim must not hide every other container (the
			// agent's clean-ups would stop): this one is left out, as
			// neither running nor gone.
			d.log.Warn("container left out of the list: its shim does not answer", "id", c.ID())
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, ct)
	}
	return out, nil
}

// errShimSilent is the state of a task whose shim did not answer.
var errShimSilent = fmt.Errorf("the shim did not answer: %w", v1.ErrUnavailable)

// Inspect reports one container (v1.ErrNotFound if it does not exist).
func (d *Driver) Inspect(ctx context.Context, id string) (Container, error) {
	ctx = d.ns(ctx)
	c, err := d.client.LoadContainer(ctx, id)
	if err != nil {
		return Container{}, fmt.Errorf("inspect %s: %w", id, kindOf(err))
	}
	ct, err := d.describe(ctx, c)
	if err != nil {
		return Container{}, fmt.Errorf("inspect %s: %w", id, kindOf(err))
	}
	return ct, nil
}

func (d *Driver) describe(ctx context.Context, c client.Container) (Container, error) {
	info, err := c.Info(ctx, client.WithoutRefreshedMetadata)
	if err != nil {
		return Container{}, err
	}
	ct := Container{ID: info.ID, Image: info.Image, Created: info.CreatedAt, Labels: map[string]string{}, Status: StatusCreated}
	for k, v := range info.Labels {
		if !strings.HasPrefix(k, labelPrefix) {
			ct.Labels[k] = v
		}
	}
	if arg := info.Labels[labelLog]; arg != "" {
		if lc, err := logfile.ParseDriverConfig(arg); err == nil {
			ct.LogPath = lc.Path
		}
	}
	if u, g, ok := strings.Cut(info.Labels[labelUser], ":"); ok {
		uid, uerr := strconv.ParseUint(u, 10, 32)
		gid, gerr := strconv.ParseUint(g, 10, 32)
		if uerr == nil && gerr == nil {
			ct.UID, ct.GID, ct.HasUser = uint32(uid), uint32(gid), true
		}
	}
	t, err := c.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return ct, nil
	}
	if err != nil {
		return Container{}, fmt.Errorf("task of %s: %w", info.ID, err)
	}
	st, err := t.Status(ctx)
	if errdefs.IsNotFound(err) {
		return ct, nil
	}
	if err != nil {
		return Container{}, fmt.Errorf("task status of %s: %w", info.ID, err)
	}
	switch st.Status {
	case client.Running, client.Paused, client.Pausing:
		ct.Status, ct.Pid = StatusRunning, t.Pid()
	case client.Stopped:
		ct.Status, ct.ExitCode, ct.ExitedAt = StatusStopped, int(st.ExitStatus), st.ExitTime
	case client.Unknown:
		// The shim did not say (slow, or stuck): the process may well
		// run. Taken for "created", it would be killed and made again.
		return Container{}, fmt.Errorf("task status of %s: %w", info.ID, errShimSilent)
	}
	return ct, nil
}
