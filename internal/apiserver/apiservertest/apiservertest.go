// Package apiservertest starts an API server on a real embedded etcd for
// tests of the server and of its clients (the CLI): a default namespace,
// a bootstrap admin token, plain HTTP (or HTTPS with StartTLS).
package apiservertest

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/apiserver"
	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/pki"
	"github.com/gantry-dev/gantry/internal/secrets/secretstest"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// Server is a running API server.
type Server struct {
	URL   string
	Token string // a cluster admin's
	Store *store.Store
	stop  func()
}

// Start runs a server whose etcd keeps its data in dir and which listens
// on addr ("127.0.0.1:0" for any port), with apps domain "localhost". It
// stops when the test ends, or earlier with Stop. Secrets are sealed with a
// master key of its own; opts add to what it is configured with.
func Start(t testing.TB, dir, addr string, opts ...apiserver.Option) *Server {
	t.Helper()
	return StartConfig(t, dir, addr, apiserver.Config{AppsDomain: "localhost", ServiceDomain: "gantry.internal"}, opts...)
}

// StartConfig is Start with a configuration of the caller's.
func StartConfig(t testing.TB, dir, addr string, cfg apiserver.Config, opts ...apiserver.Option) *Server {
	t.Helper()
	return start(t, dir, addr, cfg, nil, opts...)
}

// StartTLS is Start over HTTPS, as gantry server listens: a certificate of
// ca for 127.0.0.1, and client certificates of ca (node identities)
// verified when given. The server issues join tokens and node
// certificates with ca.
func StartTLS(t testing.TB, dir string, ca *pki.CA, opts ...apiserver.Option) *Server {
	t.Helper()
	sc, err := ca.ServingCert(filepath.Join(dir, "tls"), "api", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	opts = append([]apiserver.Option{apiserver.WithCA(ca)}, opts...)
	return start(t, dir, "127.0.0.1:0", apiserver.Config{AppsDomain: "localhost", ServiceDomain: "gantry.internal"}, pki.ServerTLS(ca.Pool(), sc.GetCertificate), opts...)
}

func start(t testing.TB, dir, addr string, cfg apiserver.Config, tlsCfg *tls.Config, opts ...apiserver.Option) *Server {
	t.Helper()
	e := storetest.EmbeddedIn(t, dir)
	s := store.New(e.Client, "")
	ctx, cancel := context.WithCancel(context.Background())
	ns := &v1.Namespace{TypeMeta: v1.TypeMeta{Kind: "Namespace"}, Metadata: v1.ObjectMeta{Name: "default"}}
	if err := s.Create(ctx, ns); err != nil && !errors.Is(err, v1.ErrAlreadyExists) {
		t.Fatal(err)
	}
	tok, err := auth.Bootstrap(ctx, s, nil)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts = append([]apiserver.Option{apiserver.WithSecrets(secretstest.Codec(t))}, opts...)
	api := apiserver.New(cfg, s, &auth.Authenticator{Store: s}, &auth.Authorizer{Store: s}, log, opts...)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	scheme := "http://"
	if tlsCfg != nil {
		ln, scheme = tls.NewListener(ln, tlsCfg), "https://"
	}
	done := make(chan struct{})
	go func() { api.Serve(ctx, ln, nil); close(done) }()
	srv := &Server{URL: scheme + ln.Addr().String(), Token: tok, Store: s}
	var once sync.Once
	srv.stop = func() {
		once.Do(func() {
			cancel()
			<-done
			e.Close()
		})
	}
	t.Cleanup(srv.stop)
	return srv
}

// Stop stops the server and its etcd; the data directory stays.
func (s *Server) Stop() { s.stop() }
