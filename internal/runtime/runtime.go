package runtime

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	clog "github.com/containerd/log"
	"github.com/opencontainers/go-digest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// Config says which containerd to use and how. Zero fields take the
// values of DefaultConfig.
type Config struct {
	// Address is containerd's gRPC socket.
	Address string
	// Namespace is the containerd namespace of Gantry's containers.
	Namespace string
	// Snapshotter unpacks images and holds container filesystems.
	Snapshotter string
	// PlainHTTP reports whether a registry host ("host:port") is reached
	// over plain HTTP. By default only loopback registries are.
	PlainHTTP func(host string) bool
	// RootCAs verifies registries' TLS certificates in addition to the
	// system roots (Gantry's own CA for its registry).
	RootCAs *x509.CertPool
	// Credentials returns the user and secret for a registry host; empty
	// strings mean anonymous. If user is empty and secret is not, secret
	// is a bearer token.
	Credentials func(host string) (user, secret string)
	// LogDriver is the argv of the binary log driver, for example
	// ["/usr/bin/gantry", "__log-driver"]: an absolute path, and at most
	// one argument (the shim passes arguments from a map, so it cannot
	// keep more than one in order). The driver receives the log file
	// settings as one more argument; see logfile.RunDriver.
	LogDriver []string
	// OpenFiles, when set, returns the hard limit of open files that
	// containerd (and so the shims and runc it starts) runs with, or 0
	// when it cannot tell: containers then get that hard limit and a
	// soft one of 1024, as under Docker, instead of containerd's default
	// 1024 for both. It must not overstate: runc may not raise a limit
	// above its own without CAP_SYS_RESOURCE, and would refuse to start
	// the container. Daemon.OpenFilesLimit gives it for a private
	// containerd.
	OpenFiles func() uint64
	// DefaultMemoryLimit and DefaultPidsLimit apply to containers whose
	// spec sets none: no container runs without both.
	DefaultMemoryLimit int64
	DefaultPidsLimit   int64
	// DefaultLogMaxSize and DefaultLogMaxFiles apply to containers whose
	// spec leaves log rotation unset.
	DefaultLogMaxSize  int64
	DefaultLogMaxFiles int
}

// Default values of Config.
const (
	DefaultNamespace   = "gantry"
	DefaultSnapshotter = "overlayfs"
	DefaultMemoryLimit = 512 << 20
	DefaultPidsLimit   = 1024
	DefaultLogMaxSize  = 10 << 20
	DefaultLogMaxFiles = 3
)

const (
	runcRuntime    = "io.containerd.runc.v2"
	connectTimeout = 10 * time.Second
	// Labels under this prefix are the runtime's own; List hides them.
	labelPrefix = "io.gantry.runtime/"
	// labelLog keeps a container's log settings (a logfile.DriverConfig),
	// so that any later Start, by this process or the next agent, runs
	// the log driver the same way.
	labelLog = labelPrefix + "log"
	// labelUser keeps "UID:GID", the user the container's process runs
	// as once the spec has resolved the image's USER and the App's
	// runAsUser/runAsGroup, for Container.UID and GID.
	labelUser = labelPrefix + "user"
	// labelOpenFiles keeps the hard limit of open files in the
	// container's spec (withOpenFiles), so that a later start under a
	// containerd run with a lower one lowers it first.
	labelOpenFiles = labelPrefix + "openfiles"
	// maxLogDriverArgs: the binary and at most one argument, see
	// Config.LogDriver.
	maxLogDriverArgs = 2
	// After containerd restarts, reconnect within a second rather than
	// after gRPC's default backoff of up to the connect timeout.
	reconnectMaxBackoff       = time.Second
	reconnectMinConnectWindow = 5 * time.Second
)

func (c Config) withDefaults() Config {
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	if c.Snapshotter == "" {
		c.Snapshotter = DefaultSnapshotter
	}
	if c.PlainHTTP == nil {
		c.PlainHTTP = IsLoopbackHost
	}
	if c.DefaultMemoryLimit <= 0 {
		c.DefaultMemoryLimit = DefaultMemoryLimit
	}
	if c.DefaultPidsLimit <= 0 {
		c.DefaultPidsLimit = DefaultPidsLimit
	}
	if c.DefaultLogMaxSize == 0 {
		c.DefaultLogMaxSize = DefaultLogMaxSize
	}
	if c.DefaultLogMaxFiles <= 0 {
		c.DefaultLogMaxFiles = DefaultLogMaxFiles
	}
	return c
}

// IsLoopbackHost reports whether a registry host ("host" or "host:port")
// is on this machine: localhost or a loopback address.
func IsLoopbackHost(host string) bool {
	h, _, err := net.SplitHostPort(host)
	if err != nil {
		h = host
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// Driver runs Gantry's containers on one containerd. It is safe for
// concurrent use; operations on the same container are serialized.
type Driver struct {
	cfg    Config
	log    *slog.Logger
	clog   *clog.Entry // containerd's client library logs here
	client *client.Client

	locks keyedMutex // per container ID
	pulls keyedMutex // per image ref

	factsMu sync.Mutex
	facts   map[digest.Digest]imageFacts // see unpackedImage
}

// New connects to containerd at cfg.Address and checks that it answers.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Driver, error) {
	cfg = cfg.withDefaults()
	if cfg.Address == "" {
		return nil, fmt.Errorf("runtime: no containerd address: %w", v1.ErrInvalid)
	}
	if len(cfg.LogDriver) > maxLogDriverArgs {
		return nil, fmt.Errorf("runtime: log driver %q has more than one argument, which the shim would reorder: %w", cfg.LogDriver, v1.ErrInvalid)
	}
	if len(cfg.LogDriver) > 0 && (cfg.LogDriver[0] == "" || cfg.LogDriver[0][0] != '/') {
		return nil, fmt.Errorf("runtime: log driver path %q must be absolute: %w", cfg.LogDriver[0], v1.ErrInvalid)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bc := backoff.DefaultConfig
	bc.MaxDelay = reconnectMaxBackoff
	c, err := client.New(cfg.Address,
		client.WithDefaultNamespace(cfg.Namespace),
		client.WithDefaultRuntime(runcRuntime),
		client.WithTimeout(connectTimeout),
		client.WithExtraDialOpts([]grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: bc, MinConnectTimeout: reconnectMinConnectWindow,
		})}),
	)
	if err != nil {
		return nil, fmt.Errorf("runtime: connect to containerd at %s: %w", cfg.Address, err)
	}
	d := &Driver{cfg: cfg, log: log.With("component", "runtime"), client: c, facts: map[digest.Digest]imageFacts{}}
	d.clog = containerdLogger(d.log.With("source", "containerd-client"))
	// A containerd that just started (or was just adopted) can drop the
	// first connections: try until connectTimeout.
	vctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	for {
		_, err := c.Version(d.ns(vctx))
		if err == nil {
			return d, nil
		}
		if vctx.Err() != nil || !(errdefs.IsUnavailable(err) || status.Code(err) == codes.Unavailable) {
			c.Close()
			return nil, fmt.Errorf("runtime: containerd at %s does not answer (is it running?): %w: %v", cfg.Address, v1.ErrUnavailable, err)
		}
		select {
		case <-vctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Close closes the connection to containerd. Containers keep running.
func (d *Driver) Close() error { return d.client.Close() }

// Namespace is the containerd namespace the driver works in.
func (d *Driver) Namespace() string { return d.cfg.Namespace }

// ns puts the driver's namespace in ctx: containerd's client reads it from
// there on every call, and its logger, so that the client library does
// not write on the process's stderr.
func (d *Driver) ns(ctx context.Context) context.Context {
	return clog.WithLogger(namespaces.WithNamespace(ctx, d.cfg.Namespace), d.clog)
}

// kindOf wraps a containerd error with the matching Gantry error kind, so
// that callers can use errors.Is with v1.Err*. An error that is still a
// raw gRPC status (the client passes a task's or a process's broken wait
// on as it came: containerd restarting) is given its kind first.
func kindOf(err error) error {
	if s, ok := status.FromError(err); ok && err != nil && s.Code() != codes.OK && s.Code() != codes.Unknown && !classified(err) {
		err = fmt.Errorf("%w: %w", errgrpc.ToNative(err), err)
	}
	switch {
	case err == nil:
		return nil
	case errdefs.IsNotFound(err):
		return fmt.Errorf("%w: %w", v1.ErrNotFound, err)
	case errdefs.IsAlreadyExists(err):
		return fmt.Errorf("%w: %w", v1.ErrAlreadyExists, err)
	case errdefs.IsInvalidArgument(err):
		return fmt.Errorf("%w: %w", v1.ErrInvalid, err)
	case errdefs.IsUnauthorized(err):
		return fmt.Errorf("%w: %w", v1.ErrUnauthorized, err)
	case errdefs.IsPermissionDenied(err):
		return fmt.Errorf("%w: %w", v1.ErrForbidden, err)
	case errdefs.IsUnavailable(err):
		return fmt.Errorf("%w: %w", v1.ErrUnavailable, err)
	case errdefs.IsFailedPrecondition(err), errdefs.IsConflict(err):
		return fmt.Errorf("%w: %w", v1.ErrConflict, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return err
}

// classified reports whether err carries one of containerd's error kinds.
func classified(err error) bool {
	for _, is := range []func(error) bool{errdefs.IsNotFound, errdefs.IsAlreadyExists, errdefs.IsInvalidArgument,
		errdefs.IsUnauthorized, errdefs.IsPermissionDenied, errdefs.IsUnavailable, errdefs.IsFailedPrecondition,
		errdefs.IsConflict, errdefs.IsCanceled, errdefs.IsDeadlineExceeded} {
		if is(err) {
			return true
		}
	}
	return false
}

// keyedMutex serializes work per key without keeping a mutex per key
// forever.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyedEntry{}
	}
	e := k.locks[key]
	if e == nil {
		e = &keyedEntry{}
		k.locks[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}
