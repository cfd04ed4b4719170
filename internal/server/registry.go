package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/audit"
	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/registry"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/prometheus/client_golang/prometheus"
)

// regAuthn checks registry credentials with the platform's tokens.
type regAuthn struct{ a *auth.Authenticator }

// Known passes on auth.Authenticator.Known: the registry's rate limit
// lets a failing address reach the store with tokens in use only.
func (r regAuthn) Known(tok string) bool { return r.a.Known(tok) }

func (r regAuthn) Authenticate(ctx context.Context, tok string) (registry.Identity, error) {
	id, err := r.a.Authenticate(ctx, tok)
	if err != nil {
		return registry.Identity{}, err
	}
	return registry.Identity{User: id.User, Node: id.Node, Credential: id.TokenID}, nil
}

// CredentialValid tells the registry whether the platform token its
// bearer token was issued for still works (not revoked or expired, its
// user not disabled).
func (r regAuthn) CredentialValid(ctx context.Context, id string) error { return r.a.Valid(ctx, id) }

// regAuthz maps registry actions onto RBAC: pull is get on images of the
// namespace, push and delete are writes. Images of the "library"
// namespace (base images) are readable by every authenticated user.
type regAuthz struct{ z *auth.Authorizer }

func (r regAuthz) Authorize(ctx context.Context, id registry.Identity, ns, action string) error {
	if action == "pull" && ns == v1.LibraryNamespace {
		return nil
	}
	err := r.z.Authorize(ctx, &auth.Identity{User: id.User, Node: id.Node}, auth.Attributes{Verb: action, Resource: "images", Namespace: ns})
	if err != nil {
		return fmt.Errorf("%s has no role granting it", id)
	}
	return nil
}

// registryStorageQuota is the registryStorage quota of namespace ns in
// bytes, 0 for none (or a namespace that does not exist: its images are a
// cluster admin's).
func (s *Server) registryStorageQuota(ctx context.Context, ns string) (int64, error) {
	n, err := store.Get[*v1.Namespace](ctx, s.Store, "", ns)
	if errors.Is(err, v1.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if n.Spec.Quota == nil {
		return 0, nil
	}
	return int64(n.Spec.Quota.Storage), nil
}

// loadKey reads a 32-byte secret key from path, making it on first use.
func loadKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil && len(b) == 32 {
		return b, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	b = make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, err
	}
	return b, nil
}

// startRegistry runs the OCI registry on its own listener.
func (s *Server) startRegistry(ctx context.Context, authn *auth.Authenticator, authz *auth.Authorizer) error {
	cfg := s.Config
	s.regMetrics = newRegistryMetrics(s.Metrics)
	key, err := loadKey(filepath.Join(cfg.DataDir, "registry.key"))
	if err != nil {
		return fmt.Errorf("registry key: %w", err)
	}
	reg, err := registry.New(ctx, registry.Config{
		DataDir:       filepath.Join(cfg.DataDir, "registry"),
		PublicURL:     cfg.RegistryURL,
		Authenticator: regAuthn{authn},
		Authorizer:    regAuthz{authz},
		TokenKey:      key,
		OnEvent:       func(e registry.Event) { s.imageEvent(ctx, e) },
		OnRequest:     func(rr registry.RequestRecord) { s.auditRegistry(ctx, rr) },
		CanDelete:     s.imageInUse,
		StorageQuota:  s.registryStorageQuota,
	}, s.log.With("component", "registry"))
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	s.Registry = reg
	ln, err := net.Listen("tcp", cfg.RegistryAddr)
	if err != nil {
		reg.Close()
		return fmt.Errorf("registry listener on %s: %w (pass --registry-addr)", cfg.RegistryAddr, err)
	}
	if s.CA != nil {
		tl, err := s.tlsListener(ln, "registry")
		if err != nil {
			ln.Close()
			reg.Close()
			return err
		}
		ln = tl
	}
	hs := &http.Server{Handler: reg.Handler(), ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	s.goRun(func() error {
		// This returns once the requests in flight are done (or 10 s
		// passed): Stop closes the audit log and the store after it, so
		// their records are in.
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			hs.Shutdown(sctx)
			reg.Close()
		}()
		if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err // it stopped on its own: no Shutdown to wait for
		}
		<-stopped
		return nil
	})
	return nil
}

// imageEvent records pushes and deletes as events of the image's
// namespace.
func (s *Server) imageEvent(ctx context.Context, e registry.Event) {
	ref := e.Repository
	if e.Tag != "" {
		ref += ":" + e.Tag
	} else if e.Digest != "" {
		ref += "@" + e.Digest
	}
	who := e.User
	if e.Node != "" {
		who = "node " + e.Node
	}
	reason, verb := "ImagePushed", "pushed"
	if e.Action == registry.ActionDelete {
		reason, verb = "ImageDeleted", "deleted"
	}
	msg := fmt.Sprintf("%s %s by %s", ref, verb, who)
	if e.Digest != "" && e.Action != registry.ActionDelete {
		msg += " (" + e.Digest + ")"
	}
	ns := e.Namespace
	if _, err := store.Get[*v1.Namespace](ctx, s.Store, "", ns); err != nil {
		ns = v1.DefaultNamespace
	}
	s.Recorder.Record(ctx, ns, v1.ObjectRef{Kind: "Image", Name: ref}, v1.EventNormal, reason, msg)
}

// imageInUse refuses to delete a tag or digest that an App's current
// revision uses, or its stable one: the revision an automatic rollback
// returns to, which must still be pullable when a rollout fails.
func (s *Server) imageInUse(ctx context.Context, repo, ref string) error {
	// A store that cannot be read cannot tell: the registry answers 503,
	// not "in use, force it".
	apps, _, err := store.List[*v1.App](ctx, s.Store, store.ListOptions{})
	if err != nil {
		return fmt.Errorf("%w: list apps: %v", v1.ErrUnavailable, err)
	}
	for _, a := range apps {
		for _, n := range []int64{a.Status.Revision, a.Status.StableRevision} {
			if n == 0 {
				continue
			}
			rev, err := store.Get[*v1.Revision](ctx, s.Store, a.Metadata.Namespace, v1.RevisionName(a.Metadata.Name, n))
			if errors.Is(err, v1.ErrNotFound) {
				continue
			}
			if err != nil {
				return fmt.Errorf("%w: read revision %d of app %s: %v", v1.ErrUnavailable, n, a.Metadata.Key(), err)
			}
			name, tag := repoAndTag(rev.Spec.Image)
			if tag == "" && !strings.Contains(rev.Spec.Image, "@") {
				tag = "latest" // what a pull of the untagged name takes
			}
			if name != repo || (ref != tag && ref != rev.Spec.ImageDigest) {
				continue
			}
			why := "its current revision"
			if n != a.Status.Revision {
				why = "its stable revision, which a failed rollout returns to"
			}
			return fmt.Errorf("%s:%s is used by app %s/%s (revision %d, %s)", repo, ref, a.Metadata.Namespace, a.Metadata.Name, rev.Spec.Number, why)
		}
	}
	return nil
}

// repoAndTag splits "host:port/ns/name:tag" into "ns/name" and "tag".
func repoAndTag(ref string) (string, string) {
	ref, _, _ = strings.Cut(ref, "@")
	if first, rest, ok := strings.Cut(ref, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		ref = rest
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[:i], ref[i+1:]
	}
	return ref, ""
}

// imageResolver pins images of the cluster registry to their digests.
type imageResolver struct {
	host string
	reg  *registry.Registry
}

func (r imageResolver) Resolve(ctx context.Context, ref string) (string, error) {
	first, _, _ := strings.Cut(ref, "/")
	if first != r.host {
		return "", fmt.Errorf("%w: %s is not in the cluster registry", v1.ErrUnsupported, ref)
	}
	repo, tag := repoAndTag(ref)
	if tag == "" {
		tag = "latest"
	}
	return r.reg.Resolve(ctx, repo, tag)
}

// registryMetrics count registry requests.
type registryMetrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

func newRegistryMetrics(reg prometheus.Registerer) *registryMetrics {
	m := &registryMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_registry_requests_total",
			Help: "Registry requests by action (pull, push, delete) and HTTP status code.",
		}, []string{"action", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gantry_registry_request_duration_seconds",
			Help:    "Registry request latency by action, bodies included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
		}, []string{"action"}),
	}
	reg.MustRegister(m.requests, m.latency)
	return m
}

// auditRegistry records a registry request in the audit log and the
// metrics.
func (s *Server) auditRegistry(ctx context.Context, rr registry.RequestRecord) {
	if m := s.regMetrics; m != nil {
		m.requests.WithLabelValues(rr.Action, strconv.Itoa(rr.Status)).Inc()
		m.latency.WithLabelValues(rr.Action).Observe(rr.Duration.Seconds())
	}
	if s.Audit == nil {
		return
	}
	ns, name, _ := strings.Cut(rr.Repository, "/")
	user := rr.Identity.User
	if rr.Identity.Node != "" {
		user = auth.NodeUser(rr.Identity.Node)
	}
	if user == "" {
		user = auth.Anonymous.User
	}
	src := rr.Source
	if h, _, err := net.SplitHostPort(src); err == nil {
		src = h
	}
	reason := ""
	switch rr.Status {
	case http.StatusUnauthorized:
		reason = "authentication failed"
	case http.StatusForbidden:
		reason = "denied"
	}
	s.Audit.Record(ctx, audit.Entry{Time: rr.Time.UTC(), User: user, Source: src, Method: rr.Method, Path: rr.Path,
		Verb: rr.Action, Resource: "images", Namespace: ns, Name: name, Status: rr.Status, Duration: rr.Duration, Reason: reason})
}
