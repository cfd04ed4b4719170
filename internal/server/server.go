// Package server assembles the server side of Gantry in one process: the
// store (embedded etcd or an external cluster), the API server, the
// controllers, and — as they are configured — the registry, DNS and
// ingress. `gantry up` runs it next to an agent; `gantry server` runs it
// alone.
//
// It owns start-up order, first-start bootstrap (default namespace, admin
// credential) and shutdown; it holds no logic of its own beyond wiring.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/apiserver"
	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/controller"
	"github.com/gantry-dev/gantry/internal/events"
	"github.com/gantry-dev/gantry/internal/informer"
	"github.com/gantry-dev/gantry/internal/scheduler"
	"github.com/gantry-dev/gantry/internal/store"
)

// Config configures the server process. DefaultConfig gives defaults.
type Config struct {
	// DataDir holds etcd's data and the server's keys.
	DataDir string
	// APIAddr is where the API listens.
	APIAddr string
	// EtcdEndpoints, when set, use an external etcd instead of the
	// embedded one.
	EtcdEndpoints []string
	// API holds the API server's settings.
	API apiserver.Config
	// EvictAfter is how long a node may be NotReady before its
	// instances are rescheduled.
	EvictAfter time.Duration
}

// DefaultConfig returns the defaults for a data directory.
func DefaultConfig(dataDir string) Config {
	return Config{
		DataDir:    dataDir,
		APIAddr:    "127.0.0.1:7443",
		API:        apiserver.DefaultConfig(),
		EvictAfter: 5 * time.Second,
	}
}

// Server is a running server.
type Server struct {
	Config    Config
	Store     *store.Store
	API       *apiserver.Server
	Registry  *prometheus.Registry
	Recorder  *events.Recorder
	Instances *informer.Informer[*v1.Instance]
	// Nodes reaches agents for logs and exec.
	Nodes      *apiserver.Nodes
	AdminToken string
	// APIURL is the address clients use.
	APIURL string

	log      *slog.Logger
	etcd     *store.Embedded
	cli      *clientv3.Client
	listener net.Listener
	wg       sync.WaitGroup
	cancel   context.CancelFunc
	errc     chan error
}

// Start brings the server up and returns once the API answers. Stop (or
// ending ctx) shuts it down.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (*Server, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &Server{Config: cfg, log: log, cancel: cancel, errc: make(chan error, 4), Registry: prometheus.NewRegistry()}
	ok := false
	defer func() {
		if !ok {
			s.Stop()
		}
	}()
	if len(cfg.EtcdEndpoints) > 0 {
		cli, err := store.Connect(ctx, cfg.EtcdEndpoints)
		if err != nil {
			return nil, err
		}
		s.cli = cli
	} else {
		e, err := store.StartEmbedded(ctx, store.EmbedConfig{Dir: filepath.Join(cfg.DataDir, "etcd"), Logger: log})
		if err != nil {
			return nil, err
		}
		s.etcd = e
		s.cli = e.Client
	}
	s.Store = store.New(s.cli, "")
	if err := s.bootstrap(ctx); err != nil {
		return nil, err
	}

	s.Recorder = events.NewRecorder(s.Store, "server", log)
	authn := &auth.Authenticator{Store: s.Store, Log: log}
	authz := &auth.Authorizer{Store: s.Store}
	s.Nodes = apiserver.NewNodes()
	s.API = apiserver.New(cfg.API, s.Store, authn, authz, log, apiserver.WithNodeProxy(s.Nodes))
	s.Registry.MustRegister(s.API.Collectors()...)

	ln, err := net.Listen("tcp", cfg.APIAddr)
	if err != nil {
		return nil, fmt.Errorf("API listener on %s: %w (is another gantry running? pass --api-addr)", cfg.APIAddr, err)
	}
	s.listener = ln
	s.APIURL = "http://" + ln.Addr().String()
	s.goRun(func() error { return s.API.Serve(ctx, ln, nil) })
	s.goRun(func() error { s.Recorder.Run(ctx); return nil })

	s.Instances = informer.New[*v1.Instance](s.Store, log)
	rollout := controller.NewRollout(s.Store, s.Recorder, log, s.Instances)
	s.goRun(func() error { s.Instances.Run(ctx); return nil })
	s.goRun(func() error { rollout.Run(ctx, 4, false); return nil })
	sched := &scheduler.Scheduler{Store: s.Store, Recorder: s.Recorder, Log: log.With("controller", "scheduler")}
	s.goRun(func() error { return sched.Run(ctx) })
	nodes := &controller.NodeLifecycle{Store: s.Store, Heartbeats: s.API.Heartbeats(), Instances: s.Instances, Recorder: s.Recorder, Log: log, EvictAfter: cfg.EvictAfter}
	s.goRun(func() error { nodes.Run(ctx); return nil })
	if s.etcd != nil {
		s.goRun(func() error {
			select {
			case err := <-s.etcd.Err():
				return fmt.Errorf("embedded etcd: %w", err)
			case <-ctx.Done():
				return nil
			}
		})
	}
	ok = true
	return s, nil
}

func (s *Server) goRun(fn func() error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := fn(); err != nil && !errors.Is(err, context.Canceled) {
			s.errc <- err
		}
	}()
}

// Fail reports a fatal error of a component started next to the server.
func (s *Server) Fail(err error) {
	select {
	case s.errc <- err:
	default:
	}
}

// Err reports a fatal error of a component.
func (s *Server) Err() <-chan error { return s.errc }

// Stop shuts everything down and waits for it.
func (s *Server) Stop() {
	s.cancel()
	s.wg.Wait()
	if s.etcd != nil {
		s.etcd.Close()
	} else if s.cli != nil {
		s.cli.Close()
	}
}

// bootstrap makes what a fresh cluster needs: the default namespace and a
// cluster admin with a token (written to DataDir/admin-token, 0600).
func (s *Server) bootstrap(ctx context.Context) error {
	ns := &v1.Namespace{TypeMeta: v1.TypeMeta{Kind: "Namespace"}, Metadata: v1.ObjectMeta{Name: v1.DefaultNamespace}}
	if err := s.Store.Create(ctx, ns); err != nil && !errors.Is(err, v1.ErrAlreadyExists) {
		return fmt.Errorf("create default namespace: %w", err)
	}
	tok, err := auth.Bootstrap(ctx, s.Store)
	if err != nil {
		return err
	}
	path := filepath.Join(s.Config.DataDir, "admin-token")
	if tok != "" {
		if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
			return fmt.Errorf("write admin token: %w", err)
		}
		s.AdminToken = tok
		return nil
	}
	if b, err := os.ReadFile(path); err == nil {
		s.AdminToken = string(trimNL(b))
	}
	return nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// NodeCredential returns a token that acts as the named node (for the
// in-process agent of `gantry up`). It is kept in the data directory and
// reused across restarts while it is valid.
func (s *Server) NodeCredential(ctx context.Context, node string) (string, error) {
	path := filepath.Join(s.Config.DataDir, "node-"+node+".token")
	if b, err := os.ReadFile(path); err == nil {
		tok := string(trimNL(b))
		a := &auth.Authenticator{Store: s.Store}
		if id, err := a.Authenticate(ctx, tok); err == nil && id.Node == node {
			return tok, nil
		}
	}
	_, tok, err := auth.CreateToken(ctx, s.Store, v1.TokenSpec{User: auth.NodeUser(node), Node: node, Description: "node credential of " + node})
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", err
	}
	return tok, nil
}
