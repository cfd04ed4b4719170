package apiserver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/apps"
	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/store"
)

// saveApp admits an App and writes it with its revision history; a dry
// run admits it and says what the write would do.
func (s *Server) saveApp(ctx context.Context, a *v1.App, prev *v1.App, dry bool) (apps.Result, error) {
	if prev != nil && a.Spec.Template.RestartNonce == "" {
		// A restart's mark stays until the next restart: re-applying
		// the same manifest (a GitOps sync) must not roll everything
		// again.
		a.Spec.Template.RestartNonce = prev.Spec.Template.RestartNonce
	}
	// Locks in a fixed order, the namespace's quota first, then the
	// cluster's claims (the rollback takes them so too).
	ns, release := s.holdQuota(ctx, a.Metadata.Namespace)
	defer release()
	if hasClaims(a) && !dry {
		defer s.HoldClaims()()
	}
	image, digest, resolve, err := s.admitApp(ctx, a, prev, admitOptions{dry: dry, ns: ns})
	if err != nil {
		return "", err
	}
	cause := a.Metadata.Annotations[v1.AnnotationChangeCause]
	res, err := apps.Save(ctx, s.store, apps.Change{App: a, Prev: prev, Image: image, ImageDigest: digest, Resolve: resolve, Cause: cause, DryRun: dry})
	if err != nil {
		return "", err
	}
	return res, nil
}

// keepLiveFields carries over what commands change on a running App and
// a manifest need not say, as `kubectl apply` keeps fields its manifest
// never set: the replica count `gantry scale` set, when the manifest
// gives none, and a pause, which only `gantry rollout resume` (or
// `paused: true` in the manifest, the other way) changes. Otherwise
// applying an edited manifest would scale a scaled App back and roll out
// a paused one at once. A manifest that removes autoscale and gives no
// replicas keeps the count the autoscaler ran the App at, as removing a
// Kubernetes HPA leaves its Deployment's.
// It returns what it kept that the manifest may have meant to change,
// for a warning.
func keepLiveFields(a, prev *v1.App) []string {
	var notes []string
	if a.Spec.Replicas == nil && a.Spec.Autoscale == nil && prev.Spec.Autoscale != nil {
		n := prev.DesiredReplicas()
		a.Spec.Replicas = &n
		notes = append(notes, fmt.Sprintf("app/%s keeps %d replicas, its count under autoscale (the manifest removes autoscale and gives no replicas); set replicas in it to change the count", a.Metadata.Name, n))
	} else if a.Spec.Replicas == nil && prev.Spec.Replicas != nil {
		n := *prev.Spec.Replicas
		a.Spec.Replicas = &n
		if n != 1 && prev.Spec.Autoscale == nil {
			notes = append(notes, fmt.Sprintf("app/%s keeps replicas %d (the manifest gives none); set replicas in it to change the count", a.Metadata.Name, n))
		}
	}
	if prev.Spec.Paused && !a.Spec.Paused {
		notes = append(notes, fmt.Sprintf("app/%s stays paused; `gantry rollout resume app/%s` rolls out the change", a.Metadata.Name, a.Metadata.Name))
	}
	a.Spec.Paused = a.Spec.Paused || prev.Spec.Paused
	return notes
}

// tlsWarnings are the warnings an App's routes earn on this server: a
// route with tls while the load balancer serves no HTTPS, or one whose
// Secret is missing or holds no certificate (HTTPS for its host would
// fail the handshake, while plain HTTP is redirected to it).
func (s *Server) tlsWarnings(ctx context.Context, a *v1.App) []string {
	var out []string
	checked := map[string]bool{}
	for _, r := range a.Spec.Routes {
		if r.TLS == "" {
			continue
		}
		route := r.Host + v1.RoutePath(r.Path)
		if !s.cfg.IngressHTTPS {
			out = append(out, fmt.Sprintf("app/%s: route %s has tls, but the load balancer serves no HTTPS (start Gantry with --ingress-https-addr): it is served over plain HTTP only", a.Metadata.Name, route))
			continue
		}
		if r.TLS == "auto" || checked[r.TLS] {
			continue
		}
		checked[r.TLS] = true
		// Whether a Secret exists, and its keys, are for those who may
		// read it.
		if s.authz.Authorize(ctx, IdentityFrom(ctx), auth.Attributes{Verb: "get", Resource: "secrets", Namespace: a.Metadata.Namespace, Name: r.TLS}) != nil {
			continue
		}
		sec, err := store.Get[*v1.Secret](ctx, s.store, a.Metadata.Namespace, r.TLS)
		switch {
		case errors.Is(err, v1.ErrNotFound):
			out = append(out, fmt.Sprintf("app/%s: route %s has tls %q, but there is no secret %q in namespace %s: HTTPS for %s fails until it is created (gantry secret set %s --from-file tls.crt=CERT --from-file tls.key=KEY)",
				a.Metadata.Name, route, r.TLS, r.TLS, a.Metadata.Namespace, r.Host, r.TLS))
		case err == nil && sec.Sealed != nil && len(sec.Sealed.Keys) > 0 && (!slices.Contains(sec.Sealed.Keys, "tls.crt") || !slices.Contains(sec.Sealed.Keys, "tls.key")):
			out = append(out, fmt.Sprintf("app/%s: route %s has tls %q, but that secret has no tls.crt and tls.key (it has %s): HTTPS for %s fails until it does",
				a.Metadata.Name, route, r.TLS, strings.Join(sec.Sealed.Keys, ", "), r.Host))
		}
	}
	return out
}

// appWarnings are the warnings an App earns on this server.
func (s *Server) appWarnings(ctx context.Context, a *v1.App) []string {
	out := s.tlsWarnings(ctx, a)
	if as, r := a.Spec.Autoscale, a.Spec.Replicas; as != nil && r != nil && (*r < as.Min || *r > as.Max) {
		out = append(out, fmt.Sprintf("app/%s: replicas %d lies outside autoscale's %d to %d: the autoscaler keeps the count within those", a.Metadata.Name, *r, as.Min, as.Max))
	}
	for _, p := range a.Spec.Ports {
		if p.ProxyProtocol != "" && (p.Protocol == "" || p.Protocol == v1.ProtocolHTTP) {
			name := cmp.Or(p.Name, strconv.Itoa(p.Port))
			out = append(out, fmt.Sprintf("app/%s: port %s gets the PROXY protocol header (%s) on its node port only: requests through routes and the default host reach it without one; give the header a port of its own (protocol: tcp) if the app requires it", a.Metadata.Name, name, p.ProxyProtocol))
		}
	}
	return out
}

// warn adds a Warning field (RFC 9111's code 299, as Kubernetes sends
// them) to the answer.
func warn(w http.ResponseWriter, text string) {
	w.Header().Add("Warning", "299 - "+strconv.Quote(text))
}

// admitApp runs the admission checks on an App and returns the qualified
// image, its digest when the reference names one, and how to look the
// digest up in the registry otherwise (done only when a revision is made).
func (s *Server) admitApp(ctx context.Context, a *v1.App, prev *v1.App, opt admitOptions) (string, string, func() string, error) {
	if prev != nil && prev.Metadata.Deleting != nil {
		return "", "", nil, fmt.Errorf("%w: app %q is being deleted", v1.ErrConflict, a.Metadata.Name)
	}
	// The status is the server's, and the quota counts an autoscaled
	// App's replicas from it: judge by the one that will be stored (the
	// stored App's, or none for a new one), never by what the request
	// carried (status: {autoscaleReplicas: 1} slipped ten past a quota).
	if prev != nil {
		a.Status = prev.Status
	} else {
		a.Status = v1.AppStatus{}
	}
	// Policy, limits and quota are judged by the namespace as stored,
	// not as the cache has it: one tightened a moment ago applies.
	ns, err := opt.ns, error(nil)
	if ns == nil {
		ns, err = s.storedNamespace(ctx, a.Metadata.Namespace)
	}
	if err == nil {
		err = notDeleting(ns)
	}
	if err != nil {
		return "", "", nil, err
	}
	if err := checkPolicy(ns, &a.Spec.Template); err != nil {
		return "", "", nil, err
	}
	if !opt.restore {
		applyLimitDefaults(ns, &a.Spec.Template)
	}
	if err := v1.Validate(a).OrNil(); err != nil {
		return "", "", nil, err
	}
	if err := s.checkClaims(ctx, a, prev); err != nil {
		return "", "", nil, err
	}
	if err := s.checkQuota(ctx, ns, a, prev); err != nil {
		if !opt.dry {
			s.quotaDenied(ctx, a, err)
		}
		return "", "", nil, err
	}
	image := v1.QualifyImage(a.Spec.Image, a.Metadata.Namespace, s.cfg.Registry)
	if prev == nil || a.Spec.Image != prev.Spec.Image {
		if err := s.mayPull(ctx, image); err != nil {
			return "", "", nil, err
		}
	}
	if _, d, ok := strings.Cut(image, "@"); ok {
		return image, d, nil, nil
	}
	resolve := func() string {
		if s.resolver == nil {
			return ""
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		d, err := s.resolver.Resolve(rctx, image)
		if err != nil {
			// Not fatal: the instance will report the pull error in
			// its status, where the user looks for it.
			s.log.Debug("image not resolved at admission", "image", image, "err", err)
			return ""
		}
		return d
	}
	return image, "", resolve, nil
}

// admitOptions says how admitApp treats an App.
type admitOptions struct {
	// dry marks a dry run: its refusal by quota makes no event.
	dry bool
	// restore marks a rollback's template, stored as its revision has
	// it: today's namespace defaults are not filled in, so the limits
	// and quota judge the values that will run (a copy with the
	// defaults filled in passed a maximum the stored template broke).
	restore bool
	// ns is the App's namespace as read under the quota lock; nil has
	// admitApp read it from the store.
	ns *v1.Namespace
}

// mayPull refuses an image of the cluster registry that the caller may
// not pull: the node pulls it with a credential that reads every
// namespace, and whoever runs it can read it through exec and logs, so
// deploying an image is pulling it. Base images of the library namespace
// are everyone's. A change the server makes itself (the controller's
// automatic rollback) has no caller, and restores what someone was
// allowed to deploy.
func (s *Server) mayPull(ctx context.Context, image string) error {
	id, ok := ctx.Value(identityKey).(*auth.Identity)
	if !ok || s.cfg.Registry == "" {
		return nil
	}
	repo, ok := strings.CutPrefix(image, s.cfg.Registry+"/")
	if !ok {
		return nil // another registry: its own credentials decide
	}
	ns, _, _ := strings.Cut(repo, "/")
	if ns == v1.LibraryNamespace {
		return nil
	}
	a := auth.Attributes{Verb: "pull", Resource: "images", Namespace: ns}
	if err := s.authz.Authorize(ctx, id, a); err != nil {
		if errors.Is(err, v1.ErrForbidden) {
			return auth.Forbidden(id, a, fmt.Sprintf("image %s is in namespace %q, and deploying an image takes leave to pull it", image, ns))
		}
		return err
	}
	return nil
}

// checkPolicy refuses what the namespace's policy does not allow: the
// sandbox settings that reach the node (privileged, host network, host
// ports) or open ways out of the container (capabilities beyond the
// default set).
func checkPolicy(ns *v1.Namespace, t *v1.Template) error {
	p := ns.Spec.Policy
	if p == nil {
		p = &v1.Policy{}
	}
	name := ns.Metadata.Name
	if !p.AllowHostPorts {
		for _, port := range t.Ports {
			if port.HostPort != 0 {
				return fmt.Errorf("%w: host ports are not allowed in namespace %q (port %s asks for host port %d): publish it with expose: tcp or a route instead, or a cluster admin can allow host ports with policy.allowHostPorts",
					v1.ErrForbidden, name, port.Name, port.HostPort)
			}
		}
	}
	sc := t.SecurityContext
	if sc == nil {
		return nil
	}
	if sc.Privileged && !p.AllowPrivileged {
		return fmt.Errorf("%w: privileged containers are not allowed in namespace %q; a cluster admin can allow them with policy.allowPrivileged", v1.ErrForbidden, name)
	}
	if sc.HostNetwork && !p.AllowHostNetwork {
		return fmt.Errorf("%w: host networking is not allowed in namespace %q; a cluster admin can allow it with policy.allowHostNetwork", v1.ErrForbidden, name)
	}
	if sc.Capabilities == nil || p.AllowPrivileged {
		return nil // a namespace that may run privileged containers may add any capability
	}
	var refused []string
	for _, c := range sc.Capabilities.Add {
		n := v1.CapabilityName(c)
		switch {
		case n == "ALL":
			return fmt.Errorf("%w: adding ALL capabilities is not allowed in namespace %q; a cluster admin can allow it with policy.allowPrivileged", v1.ErrForbidden, name)
		case slices.Contains(v1.DefaultCapabilities, n), slices.ContainsFunc(p.AllowCapabilities, func(a string) bool { return v1.CapabilityName(a) == n }):
		default:
			if !slices.Contains(refused, n) {
				refused = append(refused, n)
			}
		}
	}
	if len(refused) > 0 {
		return fmt.Errorf("%w: capabilities %s are not allowed in namespace %q: an App may add only the default set (%s) unless a cluster admin allows more with policy.allowCapabilities",
			v1.ErrForbidden, strings.Join(refused, ", "), name, strings.Join(v1.DefaultCapabilities, ", "))
	}
	return nil
}

// applyLimitDefaults fills in the namespace's default requests where the
// App left the cluster defaults, and is checked against its maximums by
// checkQuota.
func applyLimitDefaults(ns *v1.Namespace, t *v1.Template) {
	l := ns.Spec.Limits
	if l == nil {
		return
	}
	if l.DefaultCPU > 0 && t.Resources.CPU == v1.DefaultCPU {
		t.Resources.CPU = l.DefaultCPU
	}
	if l.DefaultMemory > 0 && t.Resources.Memory == v1.DefaultMemory {
		t.Resources.Memory = l.DefaultMemory
	}
}

// checkClaims refuses routes and node ports that another App already
// has, reading the other Apps once for both. prev is the App as stored,
// or nil.
func (s *Server) checkClaims(ctx context.Context, a, prev *v1.App) error {
	if !hasClaims(a) {
		return nil
	}
	all, _, err := store.List[*v1.App](ctx, s.store, store.ListOptions{})
	if err != nil {
		return err
	}
	others := all[:0]
	for _, o := range all {
		if o.Metadata.Namespace != a.Metadata.Namespace || o.Metadata.Name != a.Metadata.Name {
			others = append(others, o)
		}
	}
	if err := s.checkRoutes(a, prev, others); err != nil {
		return err
	}
	return checkNodePorts(a, others)
}

// hasClaims reports whether a asks for something that one App of the
// cluster may have: a route, or a node port.
func hasClaims(a *v1.App) bool {
	claims := len(a.Spec.Routes) > 0
	for _, p := range a.Spec.Ports {
		claims = claims || (p.Expose != "" && p.NodePort != 0)
	}
	return claims
}

// HoldClaims locks the cluster's routes and node ports until the returned
// release is called. checkClaims lists the other Apps and the write comes
// later: two writers interleaved so, in different namespaces (or one
// without a quota, whose writes take no quota lock), each saw the route
// free and both were admitted. A lock in the process suffices because one
// API server serves the cluster (as for quotaLocks). Whoever holds a
// quota lock too takes it first, and so does the controller's automatic
// rollback, which may bring a route or node port back.
func (s *Server) HoldClaims() func() {
	s.claimsMu.Lock()
	return s.claimsMu.Unlock
}

// routeFieldErrors checks what the load balancer would take otherwise than
// meant: a tls that no Secret can be named (Secret names are DNS-1123
// labels; "auto" is lower case), and a path with %-escapes, which never
// matches since requests are matched by their decoded path. A route
// stored as it is before these checks is left alone: it still updates and
// rolls back.
func routeFieldErrors(i int, r v1.Route, prev *v1.App) v1.FieldErrors {
	var errs v1.FieldErrors
	f := fmt.Sprintf("spec.routes[%d]", i)
	if r.TLS != "" && r.TLS != "auto" && v1.ValidateName(r.TLS, 63) != "" && !hasRoute(prev, func(p v1.Route) bool { return p.TLS == r.TLS }) {
		msg := fmt.Sprintf("%q is neither auto (a certificate from the cluster CA) nor a Secret's name (a DNS-1123 label: lower-case letters, digits and '-')", r.TLS)
		if strings.EqualFold(r.TLS, "auto") {
			msg += `: write auto in lower case`
		}
		errs = append(errs, v1.FieldError{Field: f + ".tls", Message: msg})
	}
	if dec, err := url.PathUnescape(r.Path); err == nil && dec != r.Path && !hasRoute(prev, func(p v1.Route) bool { return strings.EqualFold(p.Host, r.Host) && p.Path == r.Path }) {
		msg := fmt.Sprintf("%q has %%-escapes, but requests are matched by their decoded path, so it would never match: write %q", r.Path, dec)
		if strings.ContainsFunc(dec, v1.UnroutablePathChar) {
			msg = fmt.Sprintf("%q has %%-escapes, but requests are matched by their decoded path, %q, which has a query, fragment, space or control character: no route can serve it", r.Path, dec)
		}
		errs = append(errs, v1.FieldError{Field: f + ".path", Message: msg})
	}
	return errs
}

// hasRoute reports whether prev (nil for a new App) has a route that
// match accepts.
func hasRoute(prev *v1.App, match func(v1.Route) bool) bool {
	return prev != nil && slices.ContainsFunc(prev.Spec.Routes, match)
}

// checkRoutes refuses a route that one of the other Apps already serves,
// or whose tls disagrees with another App's on the same host. A route
// with the tls it had when stored is not checked for the latter: Apps
// stored before the check existed must still be updated and rolled back.
func (s *Server) checkRoutes(a, prev *v1.App, others []*v1.App) error {
	// Names of the service domain are services' (DNS would not answer a
	// route host there); a route stored before this check keeps its host.
	var bad v1.FieldErrors
	for i, r := range a.Spec.Routes {
		had := hasRoute(prev, func(p v1.Route) bool { return strings.EqualFold(p.Host, r.Host) })
		// The apps domain may lie inside it, and DNS then answers the
		// names of the apps domain as app hosts (the longer zone wins): a
		// route may take a host there. Not when the service domain lies
		// inside the apps domain instead.
		inApps := s.cfg.AppsDomain != "" && s.cfg.ServiceDomain != "" && inDomain(s.cfg.AppsDomain, s.cfg.ServiceDomain) &&
			inDomain(r.Host, s.cfg.AppsDomain)
		if d := s.cfg.ServiceDomain; d != "" && !had && !inApps && inDomain(r.Host, d) {
			bad = append(bad, v1.FieldError{Field: fmt.Sprintf("spec.routes[%d].host", i),
				Message: fmt.Sprintf("%s is inside %s, the cluster's service domain, whose names Gantry's DNS keeps for services: choose a host outside it (or use the app's default host APP.NAMESPACE.%s)", r.Host, d, s.cfg.AppsDomain)})
		}
		bad = append(bad, routeFieldErrors(i, r, prev)...)
	}
	if len(bad) > 0 {
		return bad
	}
	var errs v1.FieldErrors
	for i, r := range a.Spec.Routes {
		hadTLS := prev != nil && slices.ContainsFunc(prev.Spec.Routes, func(p v1.Route) bool {
			return strings.EqualFold(p.Host, r.Host) && p.TLS == r.TLS
		})
		if app, ns, ok := s.defaultHostOf(r.Host); ok && ns != a.Metadata.Namespace {
			errs = append(errs, v1.FieldError{Field: fmt.Sprintf("spec.routes[%d].host", i),
				Message: fmt.Sprintf("%s is the default host of app %s in namespace %s; a route may take a default host of its own namespace only", r.Host, app, ns)})
			continue
		}
		tlsClash := false
		for _, other := range others {
			for _, or := range other.Spec.Routes {
				if !strings.EqualFold(or.Host, r.Host) {
					continue
				}
				if v1.RoutePath(or.Path) == v1.RoutePath(r.Path) {
					errs = append(errs, v1.FieldError{Field: fmt.Sprintf("spec.routes[%d]", i),
						Message: fmt.Sprintf("%s%s is already routed to app %s/%s", r.Host, r.Path, other.Metadata.Namespace, other.Metadata.Name)})
				}
				// A host has one certificate, chosen by the routes that
				// set tls: another namespace must not replace it (a
				// Secret is named within its namespace, so the same
				// name elsewhere is another certificate).
				if r.TLS != "" && or.TLS != "" && !tlsClash && !hadTLS && (or.TLS != r.TLS || other.Metadata.Namespace != a.Metadata.Namespace) {
					tlsClash = true
					errs = append(errs, v1.FieldError{Field: fmt.Sprintf("spec.routes[%d].tls", i),
						Message: fmt.Sprintf("%s already gets its certificate from tls %q of app %s/%s; routes of one host must name the same tls in the same namespace, or leave tls out", r.Host, or.TLS, other.Metadata.Namespace, other.Metadata.Name)})
				}
			}
		}
	}
	if len(errs) > 0 {
		return &v1.StatusError{Status: v1.Status{Code: http.StatusConflict, Reason: "Conflict", Message: "route already in use by another app", Details: errs}}
	}
	return nil
}

// checkNodePorts refuses a nodePort that one of the other Apps already
// asks for: the load balancer can publish it for one of them only, and
// the other would be left unreachable with nothing but a line in the
// server's log.
func checkNodePorts(a *v1.App, others []*v1.App) error {
	mine := map[int]int{}
	for i, p := range a.Spec.Ports {
		if p.Expose != "" && p.NodePort != 0 {
			mine[p.NodePort] = i
		}
	}
	var errs v1.FieldErrors
	for _, other := range others {
		seen := map[int]bool{}
		for _, op := range other.Spec.Ports {
			if i, taken := mine[op.NodePort]; taken && op.Expose != "" {
				seen[op.NodePort] = true
				errs = append(errs, v1.FieldError{Field: fmt.Sprintf("spec.ports[%d].nodePort", i),
					Message: fmt.Sprintf("%d is already the node port of app %s/%s; choose another or leave it out to have one chosen", op.NodePort, other.Metadata.Namespace, other.Metadata.Name)})
			}
		}
		// A port chosen for another App is taken too: its clients know
		// it (from its status), and would reach this App instead.
		for _, np := range other.Status.NodePorts {
			if i, taken := mine[np.NodePort]; taken && !seen[np.NodePort] {
				seen[np.NodePort] = true
				errs = append(errs, v1.FieldError{Field: fmt.Sprintf("spec.ports[%d].nodePort", i),
					Message: fmt.Sprintf("%d is the node port chosen for port %q of app %s/%s; choose another or leave it out to have one chosen", np.NodePort, np.Port, other.Metadata.Namespace, other.Metadata.Name)})
			}
		}
	}
	if len(errs) > 0 {
		return &v1.StatusError{Status: v1.Status{Code: http.StatusConflict, Reason: "Conflict", Message: "node port already in use by another app", Details: errs}}
	}
	return nil
}

// inDomain reports whether host (a wildcard "*.PARENT" included) is
// domain or a name under it, whatever the case and a trailing dot.
func inDomain(host, domain string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	return host == domain || strings.HasSuffix(host, "."+domain)
}

// defaultHostOf reports whether host has the form of the load balancer's
// default host APP.NS.APPS_DOMAIN, and for which app and namespace.
func (s *Server) defaultHostOf(host string) (app, ns string, ok bool) {
	if s.cfg.AppsDomain == "" {
		return "", "", false
	}
	rest, found := strings.CutSuffix(strings.ToLower(host), "."+strings.ToLower(s.cfg.AppsDomain))
	if !found {
		return "", "", false
	}
	app, ns, found = strings.Cut(rest, ".")
	if !found || strings.Contains(ns, ".") || app == "" || ns == "" {
		return "", "", false
	}
	return app, ns, true
}

func (s *Server) deleteApp(ctx context.Context, ns, name string, rev int64) (v1.Object, error) {
	a, err := apps.Delete(ctx, s.store, ns, name, rev)
	if err != nil {
		return nil, err
	}
	return a, nil
}

// deleteInstance begins an instance's graceful deletion: it is marked so
// that the load balancer and DNS drop it at once, and its agent drains,
// stops and then removes it. Unbound instances, forced deletes and the
// agent's own final removal delete the object outright.
func (s *Server) deleteInstance(ctx context.Context, ns, name string, rev int64, force bool) (v1.Object, error) {
	k := store.KindFor[*v1.Instance]()
	node := nodeScoped(ctx)
	inst, err := store.Get[*v1.Instance](ctx, s.store, ns, name)
	if err != nil {
		return nil, err
	}
	if node != "" && inst.Spec.Node != node {
		return nil, fmt.Errorf("%w: instance %s is not bound to node %s", v1.ErrForbidden, name, node)
	}
	if node != "" && rev == 0 {
		// Only the instance checked above: one deleted and made again
		// under its name meanwhile may be another node's.
		rev = inst.Metadata.Revision
	}
	if force || inst.Spec.Node == "" || node != "" {
		return s.store.Delete(ctx, k, ns, name, rev)
	}
	if rev != 0 && rev != inst.Metadata.Revision {
		return nil, fmt.Errorf("instance %q was modified (now at revision %d, you sent %d): %w", name, inst.Metadata.Revision, rev, v1.ErrConflict)
	}
	if inst.Metadata.Deleting != nil {
		return inst, nil
	}
	// The instance drains as its App's rollouts drain theirs; one whose
	// App is gone for as long as it was created with.
	drain := inst.Spec.DrainDelay
	if a, err := store.Get[*v1.App](ctx, s.store, ns, inst.Spec.App); err == nil {
		drain = a.Spec.Strategy.Drain()
	} else if !errors.Is(err, v1.ErrNotFound) {
		return nil, err
	}
	out, err := store.Mutate(ctx, s.store, ns, name, func(i *v1.Instance) error {
		if i.Metadata.Deleting != nil {
			return store.ErrUnchanged
		}
		now := time.Now().UTC()
		i.Metadata.Deleting = &now
		i.Spec.DrainDelay = drain
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
