package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// Size is a terminal size in characters.
type Size struct{ Width, Height uint16 }

// ExecOptions describe a process to run in a running container.
type ExecOptions struct {
	Cmd        []string
	Env        []string // added to the container's environment
	WorkingDir string   // the container's when empty
	// Tty gives the process a terminal; Stderr is then unused (the
	// terminal merges both streams) and Resize may carry size changes.
	Tty    bool
	Stdin  io.Reader // nil: no input
	Stdout io.Writer // nil: discarded
	Stderr io.Writer // nil: discarded
	// Size is the terminal's size at the start (with Tty; nil: none
	// given); Resize carries its changes.
	Size   *Size
	Resize <-chan Size
}

// ioDrainTimeout bounds the wait for an exec's output after it exited: a
// process it started in the background may hold the pipes open.
const ioDrainTimeout = 2 * time.Second

// Exec runs a process in the container's namespaces, with the container's
// user, capabilities and seccomp profile, and returns its exit code.
// Cancelling ctx kills the process.
func (d *Driver) Exec(ctx context.Context, id string, opts ExecOptions) (int, error) {
	if len(opts.Cmd) == 0 {
		return -1, fmt.Errorf("exec in %s: no command: %w", id, v1.ErrInvalid)
	}
	ctx = d.ns(ctx)
	c, err := d.client.LoadContainer(ctx, id)
	if err != nil {
		return -1, fmt.Errorf("exec in %s: %w", id, kindOf(err))
	}
	t, err := c.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return -1, fmt.Errorf("exec in %s: container is not running: %w", id, v1.ErrConflict)
	}
	if err != nil {
		return -1, fmt.Errorf("exec in %s: %w", id, kindOf(err))
	}
	spec, err := c.Spec(ctx)
	if err != nil {
		return -1, fmt.Errorf("exec in %s: %w", id, kindOf(err))
	}
	// The exec inherits the container's process settings, so it is held
	// to the same security defaults.
	pspec := *spec.Process
	pspec.Args = opts.Cmd
	pspec.Terminal = opts.Tty
	pspec.Env = mergeEnv(spec.Process.Env, opts.Env)
	if opts.WorkingDir != "" {
		pspec.Cwd = opts.WorkingDir
	}
	pspec.ConsoleSize = nil
	if opts.Tty {
		if opts.Size != nil {
			pspec.ConsoleSize = &specs.Box{Width: uint(opts.Size.Width), Height: uint(opts.Size.Height)}
		}
		// As docker exec -t: programs that draw on the terminal need
		// to know its kind.
		if envIndex(pspec.Env, "TERM") < 0 {
			pspec.Env = append(pspec.Env, "TERM=xterm")
		}
	}

	stdout, stderr := opts.Stdout, opts.Stderr
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	if opts.Tty {
		stderr = nil // a terminal has one output stream
	}
	// The shim holds the exec's stdin open until told otherwise, so the
	// end of the caller's input is passed on with CloseIO once it has all
	// gone into the FIFO.
	var stdin io.Reader
	stdinDone := make(chan struct{})
	if opts.Stdin != nil {
		stdin = &eofNotifier{r: opts.Stdin, done: stdinDone}
	}
	cioOpts := []cio.Opt{cio.WithStreams(stdin, stdout, stderr)}
	if opts.Tty {
		cioOpts = append(cioOpts, cio.WithTerminal)
	}
	execID := "exec-" + randomHex(6)
	p, err := t.Exec(ctx, execID, &pspec, cio.NewCreator(cioOpts...))
	if err != nil {
		return -1, fmt.Errorf("exec in %s: %w", id, kindOf(err))
	}
	cleanupCtx := context.WithoutCancel(ctx)
	defer func() {
		if _, err := p.Delete(cleanupCtx); err != nil && !errdefs.IsNotFound(err) {
			d.log.Warn("delete exec process", "id", id, "exec", execID, "err", err)
		}
	}()
	statusC, err := p.Wait(ctx)
	if err != nil {
		return -1, fmt.Errorf("exec in %s: %w", id, kindOf(err))
	}
	if err := p.Start(ctx); err != nil {
		return -1, fmt.Errorf("exec in %s: start %q: %w", id, strings.Join(opts.Cmd, " "), kindOf(err))
	}
	if stdin != nil {
		go func() {
			select {
			case <-stdinDone:
				if err := p.CloseIO(ctx, client.WithStdinCloser); err != nil && !errdefs.IsNotFound(err) && ctx.Err() == nil {
					d.log.Debug("close exec stdin", "id", id, "err", err)
				}
			case <-ctx.Done():
			}
		}()
	}
	if opts.Tty && opts.Resize != nil {
		resizeCtx, stopResize := context.WithCancel(ctx)
		defer stopResize()
		go func() {
			for {
				select {
				case <-resizeCtx.Done():
					return
				case sz, ok := <-opts.Resize:
					if !ok {
						return
					}
					if err := p.Resize(resizeCtx, uint32(sz.Width), uint32(sz.Height)); err != nil && resizeCtx.Err() == nil {
						d.log.Debug("resize exec terminal", "id", id, "err", err)
					}
				}
			}
		}()
	}
	// reap kills the process and waits for it to go, so that the deferred
	// Delete finds it gone rather than leave it running, unseen.
	reap := func() {
		_ = p.Kill(cleanupCtx, syscall.SIGKILL)
		wctx, cancel := context.WithTimeout(cleanupCtx, 10*time.Second)
		if ch, err := p.Wait(wctx); err == nil {
			<-ch
		}
		cancel()
	}
	cancelled := func() (int, error) {
		reap()
		return -1, fmt.Errorf("exec in %s: %w", id, ctxEnded(ctx))
	}
	st, _, err := awaitExit(ctx, p, statusC, time.Time{})
	if err != nil {
		if ctxEnded(ctx) != nil {
			// The wait ended because ctx did (containerd may report
			// that as an unknown error).
			return cancelled()
		}
		reap()
		return -1, fmt.Errorf("exec in %s: wait: %w", id, err)
	}
	// Let the output of the process reach the caller's writers.
	drained := make(chan struct{})
	go func() { p.IO().Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(ioDrainTimeout):
	}
	return int(st.ExitCode()), nil
}

// eofNotifier closes done when its reader returns an error (EOF or not):
// by then everything read before has been written on, because the copy
// writes each chunk before it reads the next.
type eofNotifier struct {
	r    io.Reader
	done chan struct{}
	once sync.Once
}

func (e *eofNotifier) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil {
		e.once.Do(func() { close(e.done) })
	}
	return n, err
}

// mergeEnv returns base with the variables of extra set, replacing those
// of the same name.
func mergeEnv(base, extra []string) []string {
	out := slices.Clone(base)
	for _, kv := range extra {
		name, _, _ := strings.Cut(kv, "=")
		if i := envIndex(out, name); i >= 0 {
			out[i] = kv
		} else {
			out = append(out, kv)
		}
	}
	return out
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ctxEnded is ctx.Err(), or context.DeadlineExceeded once ctx's deadline
// has passed even if its timer has not fired yet: containerd can end a
// call on the deadline it was sent before this process's timer runs.
func ctxEnded(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}

// envIndex is the index of the entry of env (KEY=VALUE entries) that sets
// name, or -1.
func envIndex(env []string, name string) int {
	return slices.IndexFunc(env, func(kv string) bool { k, _, _ := strings.Cut(kv, "="); return k == name })
}
