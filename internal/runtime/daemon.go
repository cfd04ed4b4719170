package runtime

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"golang.org/x/sys/unix"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// DaemonConfig says where a private containerd lives.
type DaemonConfig struct {
	// Dir holds the daemon's root and state directories, its config,
	// pidfile and log, and its socket when the path is short enough.
	Dir string
	// Binary is the containerd executable, looked up in PATH; "containerd"
	// when empty.
	Binary string
	// ReadyTimeout bounds the wait for a new containerd to answer; 30s
	// when zero.
	ReadyTimeout time.Duration
}

// Daemon supervises a containerd that Gantry runs for itself. The process
// runs in its own process group and is not tied to the agent's life: a
// kill -9 of the agent leaves it (and through its shims, the containers)
// running, and the next agent adopts it.
type Daemon struct {
	cfg     DaemonConfig
	log     *slog.Logger
	addr    string
	cfgPath string

	mu       sync.Mutex
	pid      int
	exited   <-chan struct{} // closed when the process pid ends
	started  time.Time
	stopping bool
	stopped  chan struct{} // closed by Stop
}

// Supervision timing: restart quickly after a crash, back off when
// containerd keeps dying, and forget past crashes once it stays up.
const (
	restartBackoffMin = 200 * time.Millisecond
	restartBackoffMax = 30 * time.Second
	stableAfter       = 30 * time.Second
	stopTimeout       = 10 * time.Second
	// maxSocketPath leaves room under the kernel's 108-byte limit for the
	// ".ttrpc" suffix containerd adds for its second socket.
	maxSocketPath = 100
)

// SocketPath returns the gRPC socket of the daemon for dir: inside dir,
// or under /run/gantry when that path would be too long for a unix
// socket.
func SocketPath(dir string) string {
	p := filepath.Join(dir, "containerd.sock")
	if len(p) <= maxSocketPath {
		return p
	}
	sum := sha256.Sum256([]byte(filepath.Clean(dir)))
	return filepath.Join("/run/gantry", hex.EncodeToString(sum[:8])+".sock")
}

// StartDaemon makes sure a containerd for cfg.Dir runs and answers: it
// adopts one already running there (found through its pidfile, checked
// against its command line and its socket) or starts a new one.
func StartDaemon(ctx context.Context, cfg DaemonConfig, log *slog.Logger) (*Daemon, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("containerd daemon: no directory: %w", v1.ErrInvalid)
	}
	if cfg.Binary == "" {
		cfg.Binary = "containerd"
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 30 * time.Second
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("containerd daemon: %w", err)
	}
	cfg.Dir = dir
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Daemon{
		cfg:     cfg,
		log:     log.With("component", "containerd"),
		addr:    SocketPath(dir),
		cfgPath: filepath.Join(dir, "containerd.toml"),
		stopped: make(chan struct{}),
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, fmt.Errorf("containerd daemon: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(d.addr), 0o711); err != nil {
		return nil, fmt.Errorf("containerd daemon: %w", err)
	}
	if err := os.WriteFile(d.cfgPath, []byte(d.config()), 0o644); err != nil {
		return nil, fmt.Errorf("containerd daemon: write config: %w", err)
	}
	adopted, err := d.adopt(ctx)
	if err != nil {
		return nil, err
	}
	if adopted {
		return d, nil
	}
	if err := d.spawn(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

// Address is the daemon's gRPC socket, for Config.Address.
func (d *Daemon) Address() string { return d.addr }

// OpenFilesLimit returns the hard limit of open files of the current
// containerd, which its shims and runc inherit, or 0 if it cannot be read
// or is unlimited (for Config.OpenFiles). It reads it from the process,
// since an adopted containerd may have been started with other limits.
func (d *Daemon) OpenFilesLimit() uint64 {
	pid := d.Pid()
	if !d.isOurs(pid) {
		return 0 // gone, or its pid taken by another process
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0
	}
	return hardOpenFiles(string(b))
}

// hardOpenFiles reads the hard limit of open files from the text of a
// /proc/PID/limits file; 0 if it is missing or unlimited.
func hardOpenFiles(limits string) uint64 {
	for _, line := range strings.Split(limits, "\n") {
		rest, ok := strings.CutPrefix(line, "Max open files")
		if !ok {
			continue
		}
		f := strings.Fields(rest) // soft, hard, unit
		if len(f) < 2 {
			return 0
		}
		n, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return 0 // "unlimited"
		}
		return n
	}
	return 0
}

// Pid is the process ID of the current containerd.
func (d *Daemon) Pid() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pid
}

// config is containerd's configuration (format version 2, which 1.6 and
// 1.7 read). The CRI plugin is off: Gantry is the orchestrator, and CRI
// would start its own CNI and image handling. Snapshotters Gantry does
// not use are off too, so they do not probe the host.
func (d *Daemon) config() string {
	q := strconv.Quote
	return strings.Join([]string{
		"# Written by gantry; rewritten on every start.",
		"version = 2",
		"root = " + q(filepath.Join(d.cfg.Dir, "root")),
		"state = " + q(filepath.Join(d.cfg.Dir, "state")),
		`disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]`,
		"",
		"[grpc]",
		"  address = " + q(d.addr),
		"",
		"[ttrpc]",
		"  address = " + q(d.addr+".ttrpc"),
		"",
		`[plugins."io.containerd.internal.v1.opt"]`,
		"  path = " + q(filepath.Join(d.cfg.Dir, "opt")),
		"",
	}, "\n")
}

func (d *Daemon) pidfile() string { return filepath.Join(d.cfg.Dir, "containerd.pid") }

// adopt takes over a containerd already running for this directory.
func (d *Daemon) adopt(ctx context.Context) (bool, error) {
	pid := d.findRunning()
	if pid == 0 {
		return false, nil
	}
	if err := d.waitReady(ctx, pid, nil); err != nil {
		// Ours, alive, and not answering within the ready timeout: it is
		// wedged. Replace it; its shims keep the containers.
		d.log.Warn("containerd does not answer; killing it", "pid", pid, "err", err)
		_ = unix.Kill(pid, unix.SIGKILL)
		waitGone(pid, 5*time.Second)
		return false, nil
	}
	exited, err := watchPid(pid)
	if err != nil {
		return false, err
	}
	d.mu.Lock()
	d.pid, d.exited, d.started = pid, exited, time.Now()
	d.mu.Unlock()
	d.log.Info("adopted running containerd", "pid", pid, "address", d.addr)
	return true, nil
}

// findRunning returns the pid of a live containerd started with this
// directory's config, from the pidfile or, if that is missing or stale,
// from the process table.
func (d *Daemon) findRunning() int {
	if b, err := os.ReadFile(d.pidfile()); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && d.isOurs(pid) {
			return pid
		}
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && d.isOurs(pid) {
			return pid
		}
	}
	return 0
}

// isOurs reports whether pid is alive and runs containerd with our config.
func (d *Daemon) isOurs(pid int) bool {
	if pid <= 0 || pid == os.Getpid() {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	for i := 0; i+1 < len(args); i++ {
		if (args[i] == "--config" || args[i] == "-c") && args[i+1] == d.cfgPath {
			return processAlive(pid)
		}
	}
	return false
}

// spawn starts a new containerd and waits until it answers.
func (d *Daemon) spawn(ctx context.Context) error {
	// Sockets left by a dead daemon would make the new one fail to bind.
	for _, p := range []string{d.addr, d.addr + ".ttrpc"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("containerd daemon: remove stale socket: %w", err)
		}
	}
	logf, err := os.OpenFile(filepath.Join(d.cfg.Dir, "containerd.log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("containerd daemon: open log: %w", err)
	}
	defer logf.Close()
	// Not exec.CommandContext: containerd must outlive the context, and
	// the agent. Its own process group keeps a Ctrl-C on the agent's
	// terminal from reaching it. Output goes to a file, not a pipe to us,
	// so that it does not die of SIGPIPE when we do.
	cmd := exec.Command(d.cfg.Binary, "--config", d.cfgPath)
	cmd.Dir = d.cfg.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("containerd daemon: start %s (is Debian's containerd package installed?): %w", d.cfg.Binary, err)
	}
	pid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	if err := os.WriteFile(d.pidfile(), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		_ = cmd.Process.Kill()
		return fmt.Errorf("containerd daemon: write pidfile: %w", err)
	}
	if err := d.waitReady(ctx, pid, exited); err != nil {
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("containerd daemon: %w (see %s)", err, filepath.Join(d.cfg.Dir, "containerd.log"))
	}
	d.mu.Lock()
	d.pid, d.exited, d.started = pid, exited, time.Now()
	d.mu.Unlock()
	d.log.Info("started containerd", "pid", pid, "address", d.addr)
	return nil
}

// waitReady polls the socket until containerd answers a version request.
// There is nothing to watch instead: the socket appears before the
// daemon serves on it only for an instant, and a dying daemon says
// nothing.
func (d *Daemon) waitReady(ctx context.Context, pid int, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.ReadyTimeout)
	defer cancel()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		if _, err := os.Stat(d.addr); err == nil {
			if lastErr = ping(ctx, d.addr); lastErr == nil {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("containerd (pid %d) exited during startup", pid)
		case <-ctx.Done():
			if lastErr == nil {
				lastErr = errors.New("no socket")
			}
			return fmt.Errorf("containerd (pid %d) did not answer on %s: %w: %v", pid, d.addr, v1.ErrUnavailable, lastErr)
		case <-tick.C:
		}
	}
}

// ping asks containerd at addr for its version.
func ping(ctx context.Context, addr string) error {
	c, err := client.New(addr, client.WithTimeout(time.Second))
	if err != nil {
		return err
	}
	defer c.Close()
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err = c.Version(pctx)
	return err
}

// Supervise restarts containerd whenever it exits, until ctx ends or Stop
// is called, and calls onRestart (if not nil) after each restart so the
// agent can re-adopt its containers: their shims kept them running.
// Restarts back off from 200ms to 30s while containerd keeps dying.
func (d *Daemon) Supervise(ctx context.Context, onRestart func()) error {
	backoff := restartBackoffMin
	for {
		d.mu.Lock()
		exited, started, pid := d.exited, d.started, d.pid
		d.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-d.stopped:
			return nil
		case <-exited:
		}
		if d.isStopping() {
			return nil
		}
		if time.Since(started) > stableAfter {
			backoff = restartBackoffMin
		}
		d.log.Warn("containerd exited; restarting", "pid", pid, "in", backoff)
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-d.stopped:
				return nil
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, restartBackoffMax)
			err := d.spawn(ctx)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			d.log.Error("restart containerd", "err", err, "retry in", backoff)
		}
		if d.isStopping() {
			// Stop raced with the restart: do not leave a daemon behind.
			return d.Stop()
		}
		if onRestart != nil {
			onRestart()
		}
	}
}

func (d *Daemon) isStopping() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stopping
}

// Stop ends supervision and stops containerd: SIGTERM, then SIGKILL after
// 10s. Containers keep running in their shims.
func (d *Daemon) Stop() error {
	d.mu.Lock()
	if !d.stopping {
		d.stopping = true
		close(d.stopped)
	}
	pid, exited := d.pid, d.exited
	d.mu.Unlock()
	if pid == 0 {
		return nil
	}
	select {
	case <-exited:
		return nil
	default:
	}
	if err := unix.Kill(pid, unix.SIGTERM); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("stop containerd (pid %d): %w", pid, err)
	}
	select {
	case <-exited:
	case <-time.After(stopTimeout):
		d.log.Warn("containerd did not stop in time; killing it", "pid", pid)
		_ = unix.Kill(pid, unix.SIGKILL)
		<-exited
	}
	for _, p := range []string{d.pidfile(), d.addr, d.addr + ".ttrpc"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("stop containerd: %w", err)
		}
	}
	d.log.Info("stopped containerd", "pid", pid)
	return nil
}

// watchPid returns a channel closed when pid (not our child) exits. It
// uses a pidfd, which cannot be fooled by pid reuse.
func watchPid(pid int) (<-chan struct{}, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("watch containerd (pid %d): %w", pid, err)
	}
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		defer unix.Close(fd)
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			_, err := unix.Poll(fds, -1)
			if err == nil || !errors.Is(err, unix.EINTR) {
				return
			}
		}
	}()
	return ch, nil
}

func processAlive(pid int) bool {
	err := unix.Kill(pid, 0)
	if err != nil && !errors.Is(err, unix.EPERM) {
		return false
	}
	// A zombie is dead for our purposes.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] != 'Z'
	}
	return true
}

// waitGone waits up to timeout for pid to disappear.
func waitGone(pid int, timeout time.Duration) {
	gone, err := watchPid(pid)
	if err != nil {
		return // already gone
	}
	select {
	case <-gone:
	case <-time.After(timeout):
	}
}
