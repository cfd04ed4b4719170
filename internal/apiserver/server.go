package apiserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/audit"
	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/informer"
	"github.com/gantry-dev/gantry/internal/keylock"
	"github.com/gantry-dev/gantry/internal/metrics"
	"github.com/gantry-dev/gantry/internal/pki"
	"github.com/gantry-dev/gantry/internal/ratelimit"
	"github.com/gantry-dev/gantry/internal/secrets"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Version is reported by /version; the build sets it.
var Version = "dev"

// Config configures the API server. Defaults come from DefaultConfig.
type Config struct {
	// MaxBodyBytes bounds request bodies (413 beyond).
	MaxBodyBytes int64
	// Registry is host:port of the cluster registry; bare image names in
	// Apps resolve to it.
	Registry string
	// ClusterCIDR is split into per-node subnets of NodeSubnetBits.
	ClusterCIDR    string
	NodeSubnetBits int
	// HeartbeatTTL is how long a node stays Ready without a heartbeat.
	HeartbeatTTL time.Duration
	// ShutdownGrace is how long in-flight requests get on shutdown.
	ShutdownGrace time.Duration
	// AppsDomain is the load balancer's apps domain: a route may not take
	// the default host (APP.NS.AppsDomain) of another namespace's app.
	AppsDomain string
	// ServiceDomain is the cluster's DNS domain (gantry.internal): its
	// names are services', so a route may not take one (DNS would not
	// answer it).
	ServiceDomain string
	// IngressHTTPS says whether the load balancer serves HTTPS; without
	// it, an App whose routes ask for TLS is warned that they are served
	// over plain HTTP only.
	IngressHTTPS bool
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		MaxBodyBytes:   3 << 20,
		ClusterCIDR:    "10.77.0.0/16",
		NodeSubnetBits: 24,
		HeartbeatTTL:   6 * time.Second,
		ShutdownGrace:  10 * time.Second,
	}
}

// Authenticator turns a bearer token into an identity.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (*auth.Identity, error)
}

// Authorizer decides whether an identity may make a request.
type Authorizer interface {
	Authorize(ctx context.Context, id *auth.Identity, a auth.Attributes) error
}

// ImageResolver pins an image reference to its digest.
type ImageResolver interface {
	Resolve(ctx context.Context, ref string) (digest string, err error)
}

// Auditor records every request.
type Auditor interface {
	Record(ctx context.Context, e AuditEntry)
}

// AuditEntry is what the server knows about a finished request; the
// audit log chains and stores it.
type AuditEntry = audit.Entry

// Server is the API server.
type Server struct {
	// life is the context Serve runs under, for work a request leaves
	// behind (the sweeps after a namespace's delete).
	life         atomic.Pointer[context.Context]
	cfg          Config
	store        *store.Store
	log          *slog.Logger
	authn        Authenticator
	authz        Authorizer
	resolver     ImageResolver
	auditor      Auditor
	auditLog     *audit.Log
	secrets      *secrets.Codec
	tester       NotifierTester
	events       EventRecorder
	registryGC   func(context.Context) (any, error)
	ca           *pki.CA
	namespaces   *informer.Informer[*v1.Namespace]
	registryHost string
	heartbeats   *store.Heartbeats
	joins        nodeJoins
	// identities is held by node name from a join's or a renewal's last
	// check of the name to its identity handed out, so that a renewal
	// by a machine that lost the name to a join cannot finish after it.
	identities keylock.Locks
	proxy      NodeProxy
	metrics    *apiMetrics
	limiter    *ratelimit.FailLimiter
	renewals   renewalLimiter
	window     *metrics.Window
	clocks     metrics.Clocks
	reported   reportedInstances
	quotaLocks quotaLocks
	gatherer   prometheus.Gatherer
	// claimsMu is held from the check of an App's routes and node ports
	// to its write (HoldClaims).
	claimsMu sync.Mutex
	// authMu is held from the checks of a User, RoleBinding or Role
	// write against the others to the write itself: that a cluster
	// admin remains (keepsAClusterAdmin), that a binding's Role and
	// namespace exist, and that a Role deleted is bound by nothing.
	// Two writes cannot then each pass the check the other undoes.
	authMu sync.Mutex
	// authEpoch moves on with each write that may take rights away
	// (watchauth.go).
	authEpoch authEpoch
}

// Option sets an optional collaborator.
type Option func(*Server)

// WithImageResolver pins App images to digests at admission.
func WithImageResolver(r ImageResolver) Option { return func(s *Server) { s.resolver = r } }

// WithAuditor records every request.
func WithAuditor(a Auditor) Option { return func(s *Server) { s.auditor = a } }

// WithPrometheus serves the gatherer's metrics at /metrics to callers who
// may get metrics.
func WithPrometheus(g prometheus.Gatherer) Option { return func(s *Server) { s.gatherer = g } }

// WithNamespaceCache reads namespaces through an informer.
func WithNamespaceCache(inf *informer.Informer[*v1.Namespace]) Option {
	return func(s *Server) { s.namespaces = inf }
}

// WithNodeProxy lets the server reach agents for logs, exec and metrics.
func WithNodeProxy(p NodeProxy) Option { return func(s *Server) { s.proxy = p } }

// New returns a server over st.
func New(cfg Config, st *store.Store, authn Authenticator, authz Authorizer, log *slog.Logger, opts ...Option) *Server {
	d := DefaultConfig()
	// Host names are matched against the domains lower-cased and without
	// the root's dot, whatever form they were given in.
	cfg.AppsDomain, cfg.ServiceDomain = v1.CanonicalDomain(cfg.AppsDomain), v1.CanonicalDomain(cfg.ServiceDomain)
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = d.MaxBodyBytes
	}
	if cfg.ClusterCIDR == "" {
		cfg.ClusterCIDR = d.ClusterCIDR
	}
	if cfg.NodeSubnetBits == 0 {
		cfg.NodeSubnetBits = d.NodeSubnetBits
	}
	if cfg.HeartbeatTTL == 0 {
		cfg.HeartbeatTTL = d.HeartbeatTTL
	}
	if cfg.ShutdownGrace == 0 {
		cfg.ShutdownGrace = d.ShutdownGrace
	}
	s := &Server{cfg: cfg, store: st, log: log, authn: authn, authz: authz,
		heartbeats: st.Heartbeats("nodes", cfg.HeartbeatTTL), metrics: newAPIMetrics(),
		limiter: ratelimit.NewFailLimiter(5, 40)}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Heartbeats returns the node heartbeat registry the server writes, for
// the node lifecycle controller to watch.
func (s *Server) Heartbeats() *store.Heartbeats { return s.heartbeats }

type ctxKey int

const (
	identityKey ctxKey = iota
	requestIDKey
	infoKey
)

// IdentityFrom returns the caller's identity.
func IdentityFrom(ctx context.Context) *auth.Identity {
	id, _ := ctx.Value(identityKey).(*auth.Identity)
	if id == nil {
		return auth.Anonymous
	}
	return id
}

func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"version": Version, "api": v1.Version})
	})
	mux.Handle("/api/v1/", http.HandlerFunc(s.serveAPI))
	// Audited as every API request is (the guide says so): a failed
	// authentication against whoami is how stolen tokens are tried.
	mux.HandleFunc("GET /api/v1/whoami", s.authenticated("get", "whoami", s.whoami))
	mux.HandleFunc("GET /metrics", s.guarded("get", "metrics", "", s.serveProm))
	mux.HandleFunc("POST /api/v1/secret-key/rotate", s.guarded("update", "secretkeys", "", s.rotateKey))
	mux.HandleFunc("POST /api/v1/registry/gc", s.guarded("update", "registry", "gc", s.serveRegistryGC))
	mux.HandleFunc("POST /api/v1/join", s.serveJoin)
	mux.HandleFunc("POST /api/v1/join/renew", s.serveRenew)
	mux.HandleFunc("GET /api/v1/audit", s.guarded("list", "audit", "", s.serveAuditQuery))
	mux.HandleFunc("GET /api/v1/audit/export", s.guarded("list", "audit", "export", s.serveAuditExport))
	mux.HandleFunc("GET /api/v1/audit/verify", s.guarded("get", "audit", "verify", s.serveAuditVerify))
	mux.HandleFunc("GET /api/v1/audit/{op}", s.guarded("list", "audit", "", func(w http.ResponseWriter, r *http.Request) error {
		return fmt.Errorf("%w: no audit operation %q (use /audit, /audit/export or /audit/verify)", v1.ErrNotFound, r.PathValue("op"))
	}))
	// Another method on these paths is 405, not the object API's 404.
	for path, method := range map[string]string{
		"/healthz": "GET", "/readyz": "GET", "/version": "GET", "/metrics": "GET",
		"/api/v1/whoami": "GET", "/api/v1/secret-key/rotate": "POST", "/api/v1/registry/gc": "POST",
		"/api/v1/join": "POST", "/api/v1/join/renew": "POST", "/api/v1/audit": "GET",
		"/api/v1/audit/{op}": "GET",
	} {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", method)
			s.refuse(w, r, methodNotAllowed(r))
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, fmt.Errorf("%w: no API at %s; the API lives under /api/v1", v1.ErrNotFound, r.URL.Path))
	})
	return s.withRequestID(s.withRecover(s.refuseUncleanPaths(mux)))
}

// refuse answers a request refused before it reached an endpoint (a
// method the path does not take, an unclean path) with err, and records
// it as every API request is recorded: probes of /api/v1/audit or of a
// path that once deleted a namespace leave a trace too.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, err error) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w}
	id, aerr := s.authenticate(r)
	reason := "refused"
	if aerr != nil {
		id, reason = nil, "authentication failed"
	}
	writeError(rec, err)
	s.finish(r, rec, nil, orAnon(id), start, reason)
}

// refuseUncleanPaths answers 400 for a path with a "." or ".." segment or
// an empty one ("//"). ServeMux redirected them (307) to the cleaned path,
// which names another object: a client following the redirect of DELETE
// /api/v1/namespaces/team/apps/.. deleted namespace team. It looks at the
// path as sent, as ServeMux does; an escaped dot or slash (%2e%2e, ..%2F)
// is no segment of its own, and reaches parseRequest as an invalid name.
func (s *Server) refuseUncleanPaths(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.EscapedPath()
		unclean := strings.Contains(p, "//")
		for _, seg := range strings.Split(p, "/") {
			unclean = unclean || seg == "." || seg == ".."
		}
		if unclean {
			s.refuse(w, r, fmt.Errorf("%w: path %q has an empty, \".\" or \"..\" segment: name the object's path exactly", v1.ErrInvalid, p))
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if _, err := s.store.Revision(ctx); err != nil {
		writeError(w, fmt.Errorf("%w: store not ready: %v", v1.ErrUnavailable, err))
		return
	}
	w.Write([]byte("ok\n"))
}

func (s *Server) withRequestID(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if id == "" || len(id) > 64 {
			var b [8]byte
			rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		w.Header().Set("X-Request-Id", id)
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey, id)))
	})
}

func (s *Server) withRecover(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic in handler", "path", r.URL.Path, "panic", v, "request", requestID(r.Context()))
				writeError(w, fmt.Errorf("internal error (request %s)", requestID(r.Context())))
			}
		}()
		h.ServeHTTP(w, r)
	})
}

// bearerToken is the token of r's Authorization header and whether it
// names the Bearer scheme, in any case (RFC 9110 11.1: some clients and
// proxies send "bearer").
func bearerToken(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

// authenticate resolves the bearer token. A missing token gives the
// anonymous identity; a bad one is an error. A source that keeps failing
// gets 429 for each further failing request, but a valid token in use
// lately is still served from it: many users may share its address (a
// NAT, a CI runner, a proxy), and one broken script must not lock the
// others out. Any other token from it is refused unread, so a flood of
// made-up tokens costs no store reads.
func (s *Server) authenticate(r *http.Request) (*auth.Identity, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		// A node certificate from the cluster CA, verified in the TLS
		// handshake, identifies an agent.
		if node, ok := pki.NodeFromTLS(r.TLS); ok {
			if err := s.currentNodeCert(r.Context(), node, r.TLS); err != nil {
				return nil, err
			}
			return &auth.Identity{User: auth.NodeUser(node), Node: node}, nil
		}
		return auth.Anonymous, nil
	}
	src, now := sourceIP(r), time.Now()
	blocked := s.limiter.Blocked(src, now)
	tooMany := fmt.Errorf("%w: too many failed authentications from %s; wait and retry", v1.ErrTooManyRequest, src)
	failed := func(err error) error {
		if blocked {
			return tooMany
		}
		s.limiter.Fail(src, now)
		return err
	}
	tok, ok := bearerToken(r)
	if !ok {
		return nil, failed(fmt.Errorf("%w: Authorization header must be \"Bearer <token>\"", v1.ErrUnauthorized))
	}
	if k, ok := s.authn.(interface{ Known(string) bool }); blocked && ok && !k.Known(tok) {
		// Not a token in use lately: no store read for it.
		return nil, tooMany
	}
	id, err := s.authn.Authenticate(r.Context(), tok)
	if err != nil && errors.Is(err, v1.ErrUnauthorized) {
		return nil, failed(err)
	}
	return id, err
}

// serveProm exposes the Prometheus metrics to callers allowed to "get
// metrics" (cluster-admin, or a role that grants it; create a token for
// Prometheus with such a role). guarded has authorized the caller.
func (s *Server) serveProm(w http.ResponseWriter, r *http.Request) error {
	if s.gatherer == nil {
		return fmt.Errorf("%w: no metrics", v1.ErrNotFound)
	}
	promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}).ServeHTTP(w, r)
	return nil
}

// WhoAmI is the answer of /api/v1/whoami.
type WhoAmI struct {
	User  string `json:"user"`
	Node  string `json:"node,omitempty"`
	Token string `json:"token,omitempty"`
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request) error {
	id := IdentityFrom(r.Context())
	if id == auth.Anonymous {
		return fmt.Errorf("%w: no token given", v1.ErrUnauthorized)
	}
	writeJSON(w, http.StatusOK, WhoAmI{User: id.User, Node: id.Node, Token: id.TokenID})
	return nil
}

// Serve serves on ln until ctx ends, then shuts down gracefully, letting
// in-flight requests finish within ShutdownGrace.
func (s *Server) Serve(ctx context.Context, ln net.Listener, wrap func(http.Handler) http.Handler) error {
	h := s.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	go s.sweepLoop(ctx)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		srv.Close()
	}
	<-errc
	return nil
}
