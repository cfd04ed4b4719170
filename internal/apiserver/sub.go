package apiserver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/apps"
	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/notify"
	"github.com/gantry-dev/gantry/internal/store"
)

// NodeProxy forwards a request to the agent of a node (logs, exec,
// metrics live on the node).
type NodeProxy interface {
	ServeNode(w http.ResponseWriter, r *http.Request, node *v1.Node, path string, query url.Values)
}

// ScaleRequest is the body of apps/NAME/scale.
type ScaleRequest struct {
	// Replicas is required: a body without it is refused rather than
	// read as 0.
	Replicas *int32 `json:"replicas"`
}

// RollbackRequest is the body of apps/NAME/rollback.
type RollbackRequest struct {
	// ToRevision is the revision to return to; 0 means the previous one.
	ToRevision int64 `json:"toRevision,omitempty"`
}

// RegisterRequest is what an agent sends when it joins.
type RegisterRequest struct {
	Labels map[string]string `json:"labels,omitempty"`
	Status v1.NodeStatus     `json:"status"`
}

// subresources are the KIND/SUB pairs serveSub answers; parseRequest
// refuses the others.
var subresources = map[string]bool{
	"App/scale": true, "App/rollback": true, "App/pause": true, "App/resume": true, "App/restart": true,
	"App/logs": true, "App/metrics": true,
	"Instance/status": true, "Instance/metrics": true, "Instance/logs": true, "Instance/exec": true,
	"Notifier/test": true, "Secret/reveal": true,
	"Node/register": true, "Node/heartbeat": true, "Node/status": true, "Node/metrics": true,
}

func (s *Server) serveSub(w http.ResponseWriter, r *http.Request, ri *requestInfo) {
	var err error
	switch ri.Kind.Kind + "/" + ri.Sub {
	case "App/scale":
		err = s.scaleApp(w, r, ri)
	case "App/rollback":
		err = s.rollbackApp(w, r, ri)
	case "App/pause", "App/resume":
		err = s.pauseApp(w, r, ri, ri.Sub == "pause")
	case "App/restart":
		err = s.restartApp(w, r, ri)
	case "App/logs":
		err = s.appLogs(w, r, ri)
	case "Instance/status":
		err = s.instanceStatus(w, r, ri)
	case "App/metrics", "Instance/metrics", "Node/metrics":
		err = s.serveMetrics(w, r, ri)
	case "Instance/logs", "Instance/exec":
		err = s.proxyInstance(w, r, ri)
	case "Notifier/test":
		err = s.testNotifier(w, r, ri)
	case "Secret/reveal":
		err = s.revealSecret(w, r, ri)
	case "Node/register":
		err = s.registerNode(w, r, ri)
	case "Node/heartbeat":
		err = s.heartbeat(w, r, ri)
	case "Node/status":
		err = s.nodeStatus(w, r, ri)
	default:
		err = fmt.Errorf("%w: %s have no subresource %q", v1.ErrNotFound, ri.Kind.Plural, ri.Sub)
	}
	if err != nil {
		writeError(w, err)
	}
}

func (s *Server) scaleApp(w http.ResponseWriter, r *http.Request, ri *requestInfo) error {
	if r.Method != http.MethodPut && r.Method != http.MethodPost {
		return methodNotAllowed(r)
	}
	var req ScaleRequest
	if err := decodeBody(w, r, s.cfg.MaxBodyBytes, &req); err != nil {
		return err
	}
	if req.Replicas == nil {
		return v1.FieldErrors{{Field: "replicas", Message: `is required: send {"replicas": N}`}}
	}
	if *req.Replicas < 0 || *req.Replicas > 10000 {
		return v1.FieldErrors{{Field: "replicas", Message: "must be between 0 and 10000"}}
	}
	want := *req.Replicas
	ctx := r.Context()
	ns, err := store.Get[*v1.Namespace](ctx, s.store, "", ri.Namespace)
	if err == nil {
		err = notDeleting(ns)
	}
	if err != nil {
		return err
	}
	defer s.quotaLocks.hold(ns)()
	a, err := store.Mutate(ctx, s.store, ri.Namespace, ri.Name, func(a *v1.App) error {
		if a.Metadata.Deleting != nil {
			return fmt.Errorf("%w: app %q is being deleted", v1.ErrConflict, a.Metadata.Name)
		}
		if a.Spec.Replicas != nil && *a.Spec.Replicas == want {
			return store.ErrUnchanged
		}
		prev := *a
		a.Spec.Replicas = &want
		if err := s.checkQuota(ctx, ns, a, &prev); err != nil {
			s.quotaDenied(ctx, a, err)
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a)
	return nil
}

// writeVerb refuses methods other than POST and PUT on subresources that
// change an App: a GET is authorized as a read.
func writeVerb(r *http.Request) error {
	if r.Method != http.MethodPost && r.Method != http.MethodPut {
		return methodNotAllowed(r)
	}
	return nil
}

// notPaused refuses to make a revision a paused App would not roll out,
// as kubectl does.
func notPaused(a *v1.App, what string) error {
	if a.Spec.Paused {
		return fmt.Errorf("%w: app/%s is paused, so a %s would not roll out: run gantry rollout resume app/%s first",
			v1.ErrConflict, a.Metadata.Name, what, a.Metadata.Name)
	}
	return nil
}

func (s *Server) rollbackApp(w http.ResponseWriter, r *http.Request, ri *requestInfo) error {
	if err := writeVerb(r); err != nil {
		return err
	}
	var req RollbackRequest
	if r.ContentLength != 0 {
		if err := decodeBody(w, r, s.cfg.MaxBodyBytes, &req); err != nil {
			return err
		}
	}
	if req.ToRevision < 0 {
		return v1.FieldErrors{{Field: "toRevision", Message: "must be a revision number"}}
	}
	ctx := r.Context()
	// A rollback counts for the quota (its surge): checked and written
	// under the namespace's quota lock, as an apply is.
	defer s.HoldQuota(ctx, ri.Namespace)()
	// The restored template may bring back a node port: checked and
	// written under the claims lock, as an apply is (after the quota
	// lock, in saveApp's order).
	defer s.HoldClaims()()
	a, _, err := apps.Rollback(ctx, s.store, ri.Namespace, ri.Name, apps.RollbackOptions{To: req.ToRevision,
		Admit: func(a, prev *v1.App) error {
			if err := notPaused(prev, "rollback"); err != nil {
				return err
			}
			return s.AdmitRollback(ctx, a, prev)
		}})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a)
	return nil
}

// AdmitRollback checks an App whose template a rollback restores (prev
// is the App before) against the namespace's policy and quota as they
// are now, as a rollback through the API is: the controller's automatic
// rollbacks go through it too, so a template the policy has since
// forbidden does not come back by itself. The template is judged as the
// revision has it, without today's namespace defaults, because that is
// what is stored and runs. The caller holds the quota and claims locks
// (HoldQuota, then HoldClaims) across the check and the write.
func (s *Server) AdmitRollback(ctx context.Context, a, prev *v1.App) error {
	_, _, _, err := s.admitApp(ctx, a, prev, admitOptions{restore: true})
	return err
}

func (s *Server) pauseApp(w http.ResponseWriter, r *http.Request, ri *requestInfo, pause bool) error {
	if err := writeVerb(r); err != nil {
		return err
	}
	ns, err := store.Get[*v1.Namespace](r.Context(), s.store, "", ri.Namespace)
	if err == nil {
		err = notDeleting(ns)
	}
	if err != nil {
		return err
	}
	a, err := store.Mutate(r.Context(), s.store, ri.Namespace, ri.Name, func(a *v1.App) error {
		if a.Metadata.Deleting != nil {
			return fmt.Errorf("%w: app %q is being deleted", v1.ErrConflict, a.Metadata.Name)
		}
		if a.Spec.Paused == pause {
			return store.ErrUnchanged
		}
		a.Spec.Paused = pause
		return nil
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a)
	return nil
}

// restartApp rolls every instance by making a new revision with the same
// template and a fresh restart nonce.
func (s *Server) restartApp(w http.ResponseWriter, r *http.Request, ri *requestInfo) error {
	if err := writeVerb(r); err != nil {
		return err
	}
	ctx := r.Context()
	for attempt := 0; ; attempt++ {
		prev, err := store.Get[*v1.App](ctx, s.store, ri.Namespace, ri.Name)
		if err != nil {
			return err
		}
		if err := notPaused(prev, "restart"); err != nil {
			return err
		}
		a := *prev
		a.Spec.Template.RestartNonce = time.Now().UTC().Format(time.RFC3339Nano)
		if a.Metadata.Annotations == nil {
			a.Metadata.Annotations = map[string]string{}
		} else {
			a.Metadata.Annotations = v1.CloneLabels(a.Metadata.Annotations)
		}
		a.Metadata.Annotations[v1.AnnotationChangeCause] = "rollout restart"
		_, err = s.saveApp(ctx, &a, prev, false)
		if errors.Is(err, v1.ErrConflict) && attempt < 5 {
			continue
		}
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, &a)
		return nil
	}
}

// instanceStatus lets an agent write an instance's status. Only the
// status is taken from the body; the node must be the one the instance is
// bound to.
func (s *Server) instanceStatus(w http.ResponseWriter, r *http.Request, ri *requestInfo) error {
	ctx := r.Context()
	if r.Method == http.MethodGet {
		return s.get(w, r, &requestInfo{Kind: ri.Kind, Namespace: ri.Namespace, Name: ri.Name, Verb: "get"})
	}
	var body v1.Instance
	if err := decodeBody(w, r, s.cfg.MaxBodyBytes, &body); err != nil {
		return err
	}
	node := nodeScoped(ctx)
	out, err := store.Mutate(ctx, s.store, ri.Namespace, ri.Name, func(i *v1.Instance) error {
		if node != "" && i.Spec.Node != node {
			return auth.Forbidden(IdentityFrom(ctx), ri.attributes(), "the instance is not bound to node "+node)
		}
		if body.Metadata.UID != "" && body.Metadata.UID != i.Metadata.UID {
			return fmt.Errorf("%w: instance %s was replaced by a new one of the same name", v1.ErrConflict, i.Metadata.Name)
		}
		if sameObject(&v1.Instance{Status: i.Status}, &v1.Instance{Status: body.Status}) {
			return store.ErrUnchanged
		}
		i.Status = body.Status
		return nil
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) proxyInstance(w http.ResponseWriter, r *http.Request, ri *requestInfo) error {
	ctx := r.Context()
	if ri.Sub == "logs" {
		// A bad query is 400 here, not only at the agent: an instance
		// not on a node, or a node away, would answer 503 first.
		if _, err := v1.ParseLogQuery(r.URL.Query(), time.Now()); err != nil {
			return fmt.Errorf("%w: %v", v1.ErrInvalid, err)
		}
	}
	inst, err := store.Get[*v1.Instance](ctx, s.store, ri.Namespace, ri.Name)
	if err != nil {
		return err
	}
	node := inst.Spec.Node
	if node == "" {
		node = inst.Status.Node
	}
	if node == "" {
		phase := inst.Status.Phase
		if phase == "" {
			phase = "waiting to be placed"
		}
		return fmt.Errorf("%w: instance %s is not on a node yet (it is %s)", v1.ErrUnavailable, ri.Name, phase)
	}
	n, err := store.Get[*v1.Node](ctx, s.store, "", node)
	if err != nil {
		return err
	}
	if s.proxy == nil {
		return fmt.Errorf("%w: this server cannot reach agents", v1.ErrUnavailable)
	}
	// Authorized as it opened; it ends when its caller loses the right.
	r, stop, err := s.guardStream(r, ri)
	if err != nil {
		return err
	}
	defer stop()
	if ri.Sub == "logs" {
		// Followed logs run as long as the client reads them; one that
		// stops reading but keeps its connection ends them, as it ends
		// a watch. (Not for exec: its connection is taken over, and a
		// deadline set now would stay on it.)
		w = &deadlineWriter{ResponseWriter: w, rc: http.NewResponseController(w)}
	}
	s.proxy.ServeNode(w, r, n, "/instances/"+ri.Namespace+"/"+ri.Name+"/"+ri.Sub, r.URL.Query())
	return nil
}

// deadlineWriter gives each write watchWriteTimeout to go out.
type deadlineWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	d.rc.SetWriteDeadline(time.Now().Add(watchWriteTimeout))
	return d.ResponseWriter.Write(p)
}

func (d *deadlineWriter) Flush() {
	d.rc.SetWriteDeadline(time.Now().Add(watchWriteTimeout))
	d.rc.Flush()
}

func (d *deadlineWriter) Unwrap() http.ResponseWriter { return d.ResponseWriter }

// registerNode creates or refreshes a Node when its agent starts, and
// hands it a subnet of the cluster CIDR the first time.
func (s *Server) registerNode(w http.ResponseWriter, r *http.Request, ri *requestInfo) error {
	ctx := r.Context()
	if id := IdentityFrom(ctx); id.Node != "" && id.Node != ri.Name {
		return auth.Forbidden(id, ri.attributes(), "a node may only register itself")
	}
	if msg := v1.ValidateName(ri.Name, 63); msg != "" {
		return v1.FieldErrors{{Field: "metadata.name", Message: msg}}
	}
	var req RegisterRequest
	if err := decodeBody(w, r, s.cfg.MaxBodyBytes, &req); err != nil {
		return err
	}
	if errs := v1.ValidateLabels("labels", req.Labels); len(errs) > 0 {
		return errs
	}
	if id := IdentityFrom(ctx); id.Node != "" {
		for k := range req.Labels {
			if strings.HasPrefix(k, v1.LabelNodeRestrictionPrefix) {
				return auth.Forbidden(id, ri.attributes(), "a node may not set its own "+v1.LabelNodeRestrictionPrefix+"* labels (here "+k+"): a cluster admin sets them by applying the Node")
			}
		}
	}
	for attempt := 0; ; attempt++ {
		n, err := store.Get[*v1.Node](ctx, s.store, "", ri.Name)
		now := time.Now().UTC()
		req.Status.Heartbeat = &now
		req.Status.Ready = true
		if errors.Is(err, v1.ErrNotFound) {
			// An agent whose Node was deleted while it ran registers
			// again with the bridge it runs (status.bridgeIP): it gets
			// that bridge's subnet back, if no node took it meanwhile.
			subnet, err := s.allocateSubnet(ctx, req.Status.BridgeIP)
			if err != nil {
				return err
			}
			// The server's to set, at a join. (A Node deleted and made
			// again by its agent has none: it forgets which machine
			// joined last. Set here from the registering certificate, it
			// would refuse the same agent's certificate from before a
			// renewal, still in use on an open connection.)
			req.Status.JoinedAt = nil
			n = &v1.Node{TypeMeta: v1.TypeMeta{Kind: "Node"}, Metadata: v1.ObjectMeta{Name: ri.Name, Labels: req.Labels}, Spec: v1.NodeSpec{Subnet: subnet}, Status: req.Status}
			err = s.store.Create(ctx, n)
			if errors.Is(err, v1.ErrAlreadyExists) && attempt < 5 {
				continue
			}
			if err != nil {
				return err
			}
		} else if err != nil {
			return err
		} else {
			// The agent's labels over what is there: labels a cluster
			// admin gave the Node stay, as under the kubelet.
			if n.Metadata.Labels == nil && len(req.Labels) > 0 {
				n.Metadata.Labels = map[string]string{}
			}
			maps.Copy(n.Metadata.Labels, req.Labels)
			joined := n.Status.JoinedAt
			n.Status = req.Status
			n.Status.JoinedAt = joined
			if n.Spec.Subnet == "" {
				if n.Spec.Subnet, err = s.allocateSubnet(ctx, req.Status.BridgeIP); err != nil {
					return err
				}
			}
			err = s.store.Update(ctx, n)
			if errors.Is(err, v1.ErrConflict) && attempt < 5 {
				continue
			}
			if err != nil {
				return err
			}
		}
		if err := s.heartbeats.Beat(ctx, ri.Name); err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, n)
		return nil
	}
}

// allocateSubnet picks the subnet of the cluster CIDR that holds the
// address prefer, if no node holds it, and otherwise the first that no
// node holds. Two nodes registering at once may pick the same one; the
// node lifecycle controller resolves that (rare) case by re-assigning.
func (s *Server) allocateSubnet(ctx context.Context, prefer string) (string, error) {
	_, cidr, err := net.ParseCIDR(s.cfg.ClusterCIDR)
	if err != nil {
		return "", fmt.Errorf("cluster CIDR %q: %w", s.cfg.ClusterCIDR, err)
	}
	nodes, _, err := store.List[*v1.Node](ctx, s.store, store.ListOptions{})
	if err != nil {
		return "", err
	}
	used := map[string]bool{}
	for _, n := range nodes {
		used[n.Spec.Subnet] = true
	}
	ones, bits := cidr.Mask.Size()
	if s.cfg.NodeSubnetBits <= ones || s.cfg.NodeSubnetBits > bits-2 {
		return "", fmt.Errorf("node subnet size /%d does not fit cluster CIDR %s", s.cfg.NodeSubnetBits, cidr)
	}
	count := 1 << (s.cfg.NodeSubnetBits - ones)
	base := cidr.IP.To4()
	if base == nil {
		return "", fmt.Errorf("cluster CIDR %s: only IPv4 is supported", cidr)
	}
	step := uint32(1) << (bits - s.cfg.NodeSubnetBits)
	start := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	if ip := net.ParseIP(prefer).To4(); ip != nil && cidr.Contains(ip) {
		sn := (&net.IPNet{IP: ip.Mask(net.CIDRMask(s.cfg.NodeSubnetBits, 32)), Mask: net.CIDRMask(s.cfg.NodeSubnetBits, 32)}).String()
		if !used[sn] {
			return sn, nil
		}
	}
	for i := 0; i < count; i++ {
		v := start + uint32(i)*step
		ip := net.IPv4(byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
		sn := (&net.IPNet{IP: ip.To4(), Mask: net.CIDRMask(s.cfg.NodeSubnetBits, 32)}).String()
		if !used[sn] {
			return sn, nil
		}
	}
	return "", fmt.Errorf("%w: cluster CIDR %s has no free /%d subnet for another node", v1.ErrUnavailable, cidr, s.cfg.NodeSubnetBits)
}

func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request, ri *requestInfo) error {
	ctx := r.Context()
	if id := IdentityFrom(ctx); id.Node != "" && id.Node != ri.Name {
		return auth.Forbidden(id, ri.attributes(), "a node may only heartbeat for itself")
	}
	if _, err := store.Get[*v1.Node](ctx, s.store, "", ri.Name); err != nil {
		return err
	}
	if err := s.heartbeats.Beat(ctx, ri.Name); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) nodeStatus(w http.ResponseWriter, r *http.Request, ri *requestInfo) error {
	ctx := r.Context()
	if r.Method == http.MethodGet {
		return s.get(w, r, &requestInfo{Kind: ri.Kind, Name: ri.Name, Verb: "get"})
	}
	var body v1.Node
	if err := decodeBody(w, r, s.cfg.MaxBodyBytes, &body); err != nil {
		return err
	}
	out, err := store.Mutate(ctx, s.store, "", ri.Name, func(n *v1.Node) error {
		ready, joined := n.Status.Ready, n.Status.JoinedAt
		n.Status = body.Status
		// Readiness is the lifecycle controller's call, from the lease;
		// joinedAt is the join's.
		n.Status.Ready, n.Status.JoinedAt = ready, joined
		return nil
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// createToken makes a token and returns its secret, once.
func (s *Server) createToken(w http.ResponseWriter, r *http.Request, t *v1.Token) error {
	ctx := r.Context()
	id := IdentityFrom(ctx)
	if t.Spec.User == "" {
		t.Spec.User = id.User
	}
	if t.Spec.Node != "" {
		return fmt.Errorf("%w: node credentials are issued at join, not through tokens", v1.ErrForbidden)
	}
	if t.Spec.User != id.User {
		// A token acts with all of its user's rights: making one for
		// someone else takes holding every right there is.
		if err := s.authz.Authorize(ctx, id, auth.Attributes{Verb: "*", Resource: "*", Namespace: "*"}); err != nil {
			return fmt.Errorf("%w: user %q may not create tokens for another user (%s): only a cluster admin may; anyone may create tokens for themselves", v1.ErrForbidden, id.User, t.Spec.User)
		}
	}
	if t.Spec.Expires != nil && !t.Spec.Expires.After(time.Now()) {
		return v1.FieldErrors{{Field: "spec.expires", Message: fmt.Sprintf("%s is not in the future: a token that has expired can never be used", t.Spec.Expires.UTC().Format(time.RFC3339))}}
	}
	// The token is stored only if its user is still as read: a delete of
	// the user in between (which deletes their tokens) must not leave
	// this one behind for a later user of the same name.
	tok, secret := auth.TokenFor(t.Spec)
	for attempt := 0; ; attempt++ {
		u, err := store.Get[*v1.User](ctx, s.store, "", t.Spec.User)
		if err != nil {
			return err
		}
		if u.Spec.Disabled {
			return fmt.Errorf("%w: user %s is disabled, so a token of theirs could never be used: enable the user first (disabled: false, by a cluster admin)", v1.ErrConflict, u.Metadata.Name)
		}
		err = s.store.Txn().Unmodified(store.KindFor[*v1.User](), "", u.Metadata.Name, u.Metadata.Revision).Create(tok).Commit(ctx)
		if err == nil {
			break
		}
		if !errors.Is(err, v1.ErrConflict) || attempt == 2 {
			return fmt.Errorf("store token: %w", err)
		}
	}
	w.Header().Set("X-Gantry-Token", secret)
	red := redact(tok).(*v1.Token)
	writeJSON(w, http.StatusCreated, struct {
		*v1.Token
		Secret string `json:"secret"`
	}{red, secret})
	return nil
}

// admitOther checks writes of kinds other than App.
func (s *Server) admitOther(ctx context.Context, o, prev v1.Object) error {
	switch o := o.(type) {
	case *v1.Token:
		if prev == nil {
			// The server makes up a token's secret (and a node's comes
			// only from a join): an apply must not store a hash or a
			// node credential of the caller's choosing.
			return fmt.Errorf("%w: create tokens with POST /api/v1/tokens (gantry token create)", v1.ErrUnprocessable)
		}
		p := prev.(*v1.Token)
		if o.Spec.User != p.Spec.User || o.Spec.Node != p.Spec.Node {
			return fmt.Errorf("%w: a token's user cannot change; create a new token", v1.ErrUnprocessable)
		}
		if err := s.checkTokenUpdate(ctx, o, p); err != nil {
			return err
		}
		o.Spec.Hash = p.Spec.Hash
	case *v1.RoleBinding:
		rules, ok := authRoleExists(ctx, s.authz, o.Spec.Role)
		if !ok {
			return v1.FieldErrors{{Field: "spec.role", Message: fmt.Sprintf("role %q does not exist: use cluster-admin, admin, developer, viewer or a Role you created", o.Spec.Role)}}
		}
		// A binding for a namespace not made yet would grant its role in
		// whatever namespace is made later under that name (which is why
		// deleting a namespace deletes its bindings). One stored before
		// this check keeps its namespace.
		if ns := o.Spec.Namespace; ns != "*" && (prev == nil || prev.(*v1.RoleBinding).Spec.Namespace != ns) {
			if _, err := store.Get[*v1.Namespace](ctx, s.store, "", ns); errors.Is(err, v1.ErrNotFound) {
				return v1.FieldErrors{{Field: "spec.namespace", Message: fmt.Sprintf("namespace %q does not exist: create it first (gantry create namespace %s), or bind in another", ns, ns)}}
			} else if err != nil {
				return err
			}
		}
		if err := s.mayGrant(ctx, "bind role "+o.Spec.Role, rules, o.Spec.Namespace); err != nil {
			return err
		}
		// A cluster admin's binding that changes (its role, namespace or
		// user) takes a cluster admin away, unless it names another.
		if p, ok := prev.(*v1.RoleBinding); ok && isClusterAdminBinding(p) && o.Spec != p.Spec {
			if admin, err := s.effectiveAdmin(ctx, o); err != nil {
				return err
			} else if admin == "" {
				if err := s.keepsAClusterAdmin(ctx, "changing rolebinding "+o.Metadata.Name, func(b *v1.RoleBinding) bool { return b.Metadata.Name == o.Metadata.Name }); err != nil {
					return err
				}
			}
		}
	case *v1.Role:
		if _, builtin := auth.BuiltinRoles[o.Metadata.Name]; builtin {
			return v1.FieldErrors{{Field: "metadata.name", Message: fmt.Sprintf("%q is a built-in role, whose rules cannot change; give yours another name and bind that", o.Metadata.Name)}}
		}
		if err := s.mayGrant(ctx, "write role "+o.Metadata.Name, o.Spec.Rules, "*"); err != nil {
			return err
		}
	case *v1.Node:
		var was map[string]string
		if prev != nil {
			o.Spec.Subnet = prev.(*v1.Node).Spec.Subnet
			was = prev.(*v1.Node).Metadata.Labels
		}
		if id := IdentityFrom(ctx); id.Node != "" {
			if k, changed := restrictedLabelChange(was, o.Metadata.Labels); changed {
				attrs := auth.Attributes{Verb: "update", Resource: "nodes", Name: o.Metadata.Name}
				return auth.Forbidden(id, attrs, "a node may not set, change or remove its own "+v1.LabelNodeRestrictionPrefix+"* labels (here "+k+"): a cluster admin does")
			}
		}
	case *v1.User:
		if prev != nil && prev.(*v1.User).Spec.Disabled && !o.Spec.Disabled {
			return s.mayEnableUser(ctx, o.Metadata.Name)
		}
		if prev != nil && !prev.(*v1.User).Spec.Disabled && o.Spec.Disabled {
			return s.keepsAClusterAdmin(ctx, "disabling user "+o.Metadata.Name, func(b *v1.RoleBinding) bool { return b.Spec.User == o.Metadata.Name })
		}
	case *v1.JoinToken:
		if prev == nil {
			return fmt.Errorf("%w: create join tokens with POST /api/v1/jointokens", v1.ErrUnprocessable)
		}
		o.Spec.Hash = prev.(*v1.JoinToken).Spec.Hash
	}
	return nil
}

// isClusterAdminBinding reports whether b makes its user a cluster admin.
func isClusterAdminBinding(b *v1.RoleBinding) bool {
	return b.Spec.Role == "cluster-admin" && b.Spec.Namespace == "*"
}

// effectiveAdmin returns the user b makes a cluster admin: its user if it
// binds cluster-admin in every namespace and that user exists and is
// enabled, else "".
func (s *Server) effectiveAdmin(ctx context.Context, b *v1.RoleBinding) (string, error) {
	if !isClusterAdminBinding(b) {
		return "", nil
	}
	u, err := store.Get[*v1.User](ctx, s.store, "", b.Spec.User)
	if errors.Is(err, v1.ErrNotFound) || err == nil && u.Spec.Disabled {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return u.Metadata.Name, nil
}

// keepsAClusterAdmin refuses a change (what, for the message) after which
// no enabled user would hold cluster-admin: nobody could then manage
// users, roles or namespaces through the API, and a start makes a new
// admin only on an empty cluster. gone says which bindings the change
// takes away. The caller holds authMu from the check to its write.
func (s *Server) keepsAClusterAdmin(ctx context.Context, what string, gone func(*v1.RoleBinding) bool) error {
	bs, _, err := store.List[*v1.RoleBinding](ctx, s.store, store.ListOptions{})
	if err != nil {
		return err
	}
	takes, keeps := false, false
	for _, b := range bs {
		user, err := s.effectiveAdmin(ctx, b)
		if err != nil {
			return err
		}
		switch {
		case user == "":
		case gone(b):
			takes = true
		default:
			keeps = true
		}
	}
	if !takes || keeps {
		return nil
	}
	return fmt.Errorf("%w: %s would leave no enabled user with cluster-admin, and nobody could manage users, roles or namespaces any more: bind cluster-admin to another user first (gantry role bind NAME cluster-admin)", v1.ErrConflict, what)
}

// mayEnableUser refuses to enable a disabled user to all but a cluster
// admin: it gives back every token of theirs, with all of their rights,
// which may be a cluster admin's. A role that grants `update users`
// lets its holder disable users and edit them, as checkTokenUpdate lets
// one revoke tokens but not revive them.
func (s *Server) mayEnableUser(ctx context.Context, name string) error {
	id := IdentityFrom(ctx)
	if s.authz.Authorize(ctx, id, auth.Attributes{Verb: "*", Resource: "*", Namespace: "*"}) == nil {
		return nil
	}
	attrs := auth.Attributes{Verb: "update", Resource: "users", Name: name}
	return auth.Forbidden(id, attrs, "only a cluster admin may enable a disabled user (set spec.disabled to false)")
}

// mayGrant refuses what would let the caller grant rights it does not
// hold itself (Kubernetes' escalation check): a binding to a role, or a
// role's rules, in namespace ns ("*": everywhere) must be within what the
// caller may do there. Without an identity (the server's own writes)
// there is nothing to check.
func (s *Server) mayGrant(ctx context.Context, what string, rules []v1.Rule, ns string) error {
	id := IdentityFrom(ctx)
	if id == nil || s.authz == nil {
		return nil
	}
	for _, r := range rules {
		for _, verb := range r.Verbs {
			for _, res := range r.Resources {
				base, sub, _ := strings.Cut(res, "/")
				a := auth.Attributes{Verb: verb, Resource: base, Subresource: sub, Namespace: ns}
				if err := s.authz.Authorize(ctx, id, a); err != nil {
					where := "in namespace " + ns
					if ns == "*" {
						where = "everywhere"
					}
					return fmt.Errorf("%w: %s would grant %s on %s %s, which you may not do yourself: only someone who holds a right may grant it",
						v1.ErrForbidden, what, verb, res, where)
				}
			}
		}
	}
	return nil
}

func authRoleExists(ctx context.Context, z Authorizer, role string) ([]v1.Rule, bool) {
	if r, ok := z.(interface {
		RulesFor(context.Context, string) ([]v1.Rule, bool, error)
	}); ok {
		rules, found, err := r.RulesFor(ctx, role)
		return rules, err == nil && found
	}
	_, ok := auth.BuiltinRoles[role]
	return nil, ok
}

// NotifierTester sends a test message through a notifier.
type NotifierTester interface {
	Test(ctx context.Context, n *v1.Notifier) notify.Result
}

// WithNotifierTester serves notifiers/NAME/test.
func WithNotifierTester(t NotifierTester) Option { return func(s *Server) { s.tester = t } }

// testNotifier sends a test message now and returns the delivery result
// (200 even when delivery failed: the result says why).
func (s *Server) testNotifier(w http.ResponseWriter, r *http.Request, ri *requestInfo) error {
	if r.Method != http.MethodPost {
		return methodNotAllowed(r)
	}
	if s.tester == nil {
		return fmt.Errorf("%w: notifications are not running on this server", v1.ErrUnavailable)
	}
	n, err := store.Get[*v1.Notifier](r.Context(), s.store, ri.Namespace, ri.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.tester.Test(r.Context(), n))
	return nil
}

// restrictedLabelChange returns a node-restricted label key that differs
// between a Node's labels before and after a write.
func restrictedLabelChange(before, after map[string]string) (string, bool) {
	for _, m := range []map[string]string{before, after} {
		for k := range m {
			if !strings.HasPrefix(k, v1.LabelNodeRestrictionPrefix) {
				continue
			}
			a, inA := before[k]
			b, inB := after[k]
			if a != b || inA != inB {
				return k, true
			}
		}
	}
	return "", false
}
