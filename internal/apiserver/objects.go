package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/store"
)

func contextWith(ctx context.Context, id *auth.Identity, ri *requestInfo) context.Context {
	ctx = context.WithValue(ctx, identityKey, id)
	return context.WithValue(ctx, infoKey, ri)
}

// List is the body of a list response.
type List struct {
	Kind     string      `json:"kind"`
	Revision int64       `json:"revision"`
	Items    []v1.Object `json:"items"`
}

// WatchEvent is one line of a watch stream.
type WatchEvent struct {
	Type     string     `json:"type"`
	Revision int64      `json:"revision,omitempty"`
	Object   v1.Object  `json:"object,omitempty"`
	Error    *v1.Status `json:"error,omitempty"`
}

func (s *Server) dispatch(w http.ResponseWriter, r *http.Request, ri *requestInfo) {
	if ri.Sub != "" {
		s.serveSub(w, r, ri)
		return
	}
	var err error
	switch ri.Verb {
	case "list":
		err = s.list(w, r, ri)
	case "watch":
		err = s.watch(w, r, ri)
	case "get":
		err = s.get(w, r, ri)
	case "create":
		err = s.create(w, r, ri)
	case "update", "apply":
		err = s.update(w, r, ri)
	case "delete":
		err = s.delete(w, r, ri)
	default:
		err = methodNotAllowed(r)
	}
	if err != nil {
		writeError(w, err)
	}
}

// nodeScoped reports whether the caller is an agent, whose view of
// instances is limited to its node.
func nodeScoped(ctx context.Context) string {
	return IdentityFrom(ctx).Node
}

func boundTo(o v1.Object, node string) bool {
	i, ok := o.(*v1.Instance)
	return ok && i.Spec.Node == node
}

func (s *Server) listOptions(r *http.Request, ri *requestInfo) (store.ListOptions, error) {
	opts := store.ListOptions{Namespace: ri.Namespace}
	sel, err := v1.ParseSelector(r.URL.Query().Get("labelSelector"))
	if err != nil {
		return opts, fmt.Errorf("%w: labelSelector: %v", v1.ErrInvalid, err)
	}
	opts.Selector = sel
	return opts, nil
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, ri *requestInfo) error {
	opts, err := s.listOptions(r, ri)
	if err != nil {
		return err
	}
	items, rev, err := s.store.List(r.Context(), ri.Kind, opts)
	if err != nil {
		return err
	}
	node := nodeScoped(r.Context())
	own := ownTokensOnly(r.Context())
	me := IdentityFrom(r.Context()).User
	out := make([]v1.Object, 0, len(items))
	for _, o := range items {
		if node != "" && !boundTo(o, node) {
			continue
		}
		if t, ok := o.(*v1.Token); own && (!ok || t.Spec.User != me || t.Spec.Node != "") {
			continue
		}
		out = append(out, redact(o))
	}
	writeJSON(w, http.StatusOK, List{Kind: ri.Kind.Kind + "List", Revision: rev, Items: out})
	return nil
}

// watch streams changes as newline-delimited JSON. With revision=N it
// sends every change after N; without, it first sends every existing
// object as ADDED and then the changes after that list.
func (s *Server) watch(w http.ResponseWriter, r *http.Request, ri *requestInfo) error {
	ctx := r.Context()
	q := r.URL.Query()
	var after int64
	if v := q.Get("revision"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("%w: revision must be a non-negative number", v1.ErrInvalid)
		}
		after = n
	}
	if after > 0 {
		// A revision the store has not reached (a position from before
		// the store was restored from a backup, or a typo) would be
		// answered with a BOOKMARK promising everything up to it, and
		// the changes until the store got there were never sent. The
		// client lists again on 410, as after a compaction.
		cur, err := s.store.Revision(ctx)
		if err != nil {
			return err
		}
		if after > cur {
			return fmt.Errorf("%w: revision %d is ahead of the store's current revision %d (was the store restored?): list again and watch from the list's revision", v1.ErrResyncRequired, after, cur)
		}
	}
	opts, err := s.listOptions(r, ri)
	if err != nil {
		return err
	}
	// The caller was authorized once, as the request came; a watch
	// lasts. It is checked again whenever a write may have taken its
	// rights away (the auth epoch moved on) and at each heartbeat (a
	// token that expired, a change made through another server).
	recheck := s.watchRecheck(r, ri)
	var authChanged <-chan struct{}
	if recheck != nil {
		var epoch uint64
		epoch, authChanged = s.authEpoch.current()
		if epoch != ri.authEpoch {
			if err := recheck(ctx); err != nil {
				return err
			}
		}
	}
	node := nodeScoped(ctx)
	var initial []v1.Object
	if after == 0 {
		items, rev, err := s.store.List(ctx, ri.Kind, opts)
		if err != nil {
			return err
		}
		initial, after = items, rev
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		return errors.New("streaming not supported by this connection")
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	// A client that stops reading, but keeps its connection, must not
	// hold the stream (and the store's events behind it, in memory) for
	// ever: each write has watchWriteTimeout to go out.
	rc := http.NewResponseController(w)
	deadline := func() { rc.SetWriteDeadline(time.Now().Add(watchWriteTimeout)) }
	enc := json.NewEncoder(w)
	for _, o := range initial {
		if node != "" && !boundTo(o, node) {
			continue
		}
		deadline()
		if enc.Encode(WatchEvent{Type: string(store.Added), Revision: o.GetMeta().Revision, Object: redact(o)}) != nil {
			return nil
		}
	}
	// A bookmark right away tells the client the revision it is now
	// caught up to, even when nothing changes for a while.
	deadline()
	enc.Encode(WatchEvent{Type: string(store.Bookmark), Revision: after})
	if rc.Flush() != nil {
		return nil
	}
	ch := s.store.Watch(ctx, ri.Kind, store.WatchOptions{Namespace: ri.Namespace, Selector: opts.Selector, Revision: after + 1, ProgressNotify: true})
	// An idle stream gets a BOOKMARK every watchHeartbeat whatever etcd
	// does (an external etcd sends its progress every ten minutes), so
	// that clients can tell a quiet stream from a dead connection. It
	// repeats the last revision the stream promised complete.
	heartbeat := time.NewTicker(watchHeartbeat)
	defer heartbeat.Stop()
	// stillAllowed re-checks the caller and ends the stream with an
	// ERROR if it may no longer watch.
	stillAllowed := func() bool {
		err := recheck(ctx)
		if err == nil || ctx.Err() != nil {
			return true
		}
		id := IdentityFrom(ctx)
		if !refused(err) {
			s.log.WarnContext(ctx, "watch: could not check the caller again; trying at the next heartbeat", "user", id.User, "resource", ri.Kind.Plural, "ns", ri.Namespace, "err", err)
			return true
		}
		s.log.InfoContext(ctx, "watch: caller may no longer watch; ending it", "user", id.User, "resource", ri.Kind.Plural, "ns", ri.Namespace, "err", err)
		code, reason := v1.StatusFor(err)
		deadline()
		enc.Encode(WatchEvent{Type: string(store.Error), Error: &v1.Status{Code: code, Reason: reason,
			Message: fmt.Sprintf("watch ended: its caller may no longer make it: %v", err)}})
		rc.Flush()
		return false
	}
	mark, wrote := after, false
	for {
		var ev store.Event
		select {
		case e, ok := <-ch:
			if !ok {
				return nil
			}
			ev = e
		case <-authChanged:
			// The channel of the epoch now, before the check: a write
			// during it wakes the stream again.
			_, authChanged = s.authEpoch.current()
			if !stillAllowed() {
				return nil
			}
			continue
		case <-heartbeat.C:
			if recheck != nil && !stillAllowed() {
				return nil
			}
			if !wrote {
				deadline()
				enc.Encode(WatchEvent{Type: string(store.Bookmark), Revision: mark})
				if rc.Flush() != nil {
					return nil
				}
			}
			wrote = false
			continue
		}
		deadline()
		if ev.Type != store.Error && ev.Type != store.Bookmark && !ev.More {
			// The last event of its revision: the revision is complete
			// once this one is sent (or left out for this node).
			mark = max(mark, ev.Revision)
		}
		switch ev.Type {
		case store.Error:
			code, reason := v1.StatusFor(ev.Err)
			enc.Encode(WatchEvent{Type: string(store.Error), Revision: ev.Revision, Error: &v1.Status{Code: code, Reason: reason, Message: ev.Err.Error()}})
			fl.Flush()
			return nil
		case store.Bookmark:
			mark = max(mark, ev.Revision)
			enc.Encode(WatchEvent{Type: string(store.Bookmark), Revision: ev.Revision})
		default:
			if node != "" && !boundTo(ev.Object, node) {
				// Instances that move off this node must still be
				// seen as gone by its agent.
				if ev.Type != store.Modified {
					continue
				}
				// Other events of this revision (one transaction) may
				// follow, and a bookmark promises that everything up to
				// its revision was sent: a client resuming after it
				// would lose them. Only the revisions before are done.
				mark = max(mark, ev.Revision-1)
				enc.Encode(WatchEvent{Type: string(store.Bookmark), Revision: ev.Revision - 1})
				continue
			}
			if err := enc.Encode(WatchEvent{Type: string(ev.Type), Revision: ev.Revision, Object: redact(ev.Object)}); err != nil {
				return nil
			}
		}
		// Flush each event: watchers are latency-sensitive (an instance
		// becoming ready must reach the load balancer within ms).
		if rc.Flush() != nil {
			return nil
		}
		// (Events left out for a node do not count: a node's stream in
		// a busy cluster may be all of them, and must still be heard.)
		wrote = true
	}
}

// watchHeartbeat is how often an idle watch stream gets a BOOKMARK (a
// variable for tests).
var watchHeartbeat = 5 * time.Second

// watchWriteTimeout is how long one write of a watch stream, or of
// followed App logs, may take before the stream is ended (a client that
// stopped reading but keeps its connection). A variable for tests.
var watchWriteTimeout = 30 * time.Second

func (s *Server) get(w http.ResponseWriter, r *http.Request, ri *requestInfo) error {
	o, err := s.store.Get(r.Context(), ri.Kind, ri.Namespace, ri.Name)
	if err != nil {
		return err
	}
	if node := nodeScoped(r.Context()); node != "" && ri.Kind.Kind == "Instance" && !boundTo(o, node) {
		return auth.Forbidden(IdentityFrom(r.Context()), ri.attributes(), "the instance is not bound to node "+node)
	}
	writeJSON(w, http.StatusOK, redact(o))
	return nil
}

// decodeObject reads a request body as an object of the request's kind
// and checks that its name and namespace agree with the URL, and that a
// dry run can be made of it.
func (s *Server) decodeObject(w http.ResponseWriter, r *http.Request, ri *requestInfo) (v1.Object, error) {
	o, _ := v1.NewObject(ri.Kind.Kind)
	if err := decodeBody(w, r, s.cfg.MaxBodyBytes, o); err != nil {
		return nil, err
	}
	t := o.GetType()
	if t.Kind != "" && t.Kind != ri.Kind.Kind {
		return nil, fmt.Errorf("%w: body is a %s but the URL is for %s", v1.ErrInvalid, t.Kind, ri.Kind.Plural)
	}
	// As the manifest decoder: an object of another API version (apps/v2)
	// was stored as a v1 object without a word.
	if av := t.APIVersion; av != "" && av != v1.Version && av != "gantry.dev/"+v1.Version {
		return nil, fmt.Errorf("%w: apiVersion %q is not supported: use %s", v1.ErrInvalid, av, v1.Version)
	}
	*t = v1.TypeMeta{Kind: ri.Kind.Kind, APIVersion: v1.Version}
	m := o.GetMeta()
	if ri.Kind.Namespaced {
		if m.Namespace == "" {
			m.Namespace = ri.Namespace
		}
		if m.Namespace != ri.Namespace {
			return nil, fmt.Errorf("%w: metadata.namespace %q does not match the URL's namespace %q", v1.ErrInvalid, m.Namespace, ri.Namespace)
		}
	}
	if ri.Name != "" {
		if m.Name == "" {
			m.Name = ri.Name
		}
		if m.Name != ri.Name {
			return nil, fmt.Errorf("%w: metadata.name %q does not match the URL's name %q", v1.ErrInvalid, m.Name, ri.Name)
		}
	}
	// Set by the server alone: a create stamps its own time, an update
	// keeps the stored one.
	m.Deleting, m.Created = nil, time.Time{}
	if ri.DryRun {
		if err := dryRunnable(o); err != nil {
			return nil, err
		}
	}
	v1.SetDefaults(o)
	return o, nil
}

// readOnly explains why users cannot write a kind directly.
func readOnly(k *v1.KindInfo, verb string) error {
	switch k.Kind {
	case "Revision":
		return fmt.Errorf("%w: revisions are immutable; apply a changed app to make a new one, delete the app to remove them", v1.ErrUnprocessable)
	case "Instance":
		if verb == "delete" {
			return nil
		}
		return fmt.Errorf("%w: instances are created by their app; change the app instead", v1.ErrUnprocessable)
	case "Event":
		return fmt.Errorf("%w: events are written by Gantry itself", v1.ErrUnprocessable)
	case "Node":
		if verb == "create" {
			return fmt.Errorf("%w: nodes register themselves when their agent joins (gantry agent --join)", v1.ErrUnprocessable)
		}
	}
	return nil
}

func (s *Server) create(w http.ResponseWriter, r *http.Request, ri *requestInfo) error {
	ctx := r.Context()
	if ri.AllNamespaces {
		return fmt.Errorf("%w: create %s in a namespace: POST /api/v1/namespaces/NS/%s", v1.ErrInvalid, ri.Kind.Plural, ri.Kind.Plural)
	}
	if err := readOnly(ri.Kind, "create"); err != nil && !(ri.Kind.Kind == "Event" && nodeScoped(ctx) != "") {
		return err
	}
	o, err := s.decodeObject(w, r, ri)
	if err != nil {
		return err
	}
	if t, ok := o.(*v1.Token); ok {
		// The server names tokens: the name is part of the secret.
		return s.createToken(w, r, t)
	}
	if jt, ok := o.(*v1.JoinToken); ok {
		return s.createJoinToken(w, r, jt)
	}
	if err := v1.Validate(o).OrNil(); err != nil {
		return err
	}
	if err := s.checkNamespace(ctx, o); err != nil {
		return err
	}
	if e, ok := o.(*v1.Event); ok {
		// Agents report events about their own instances; they expire
		// like the server's own.
		if node := nodeScoped(ctx); node != "" {
			if err := s.nodeEvent(ctx, node, e); err != nil {
				return err
			}
		}
		if e.Time.IsZero() {
			e.Time = time.Now().UTC()
		}
		if err := s.store.CreateExpiring(ctx, e, time.Hour); err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, e)
		return nil
	}
	switch o := o.(type) {
	case *v1.App:
		res, err := s.saveApp(ctx, o, nil, ri.DryRun)
		if err == nil && ri.DryRun {
			err = s.dryCreate(ctx, ri.Kind, o)
		}
		if err != nil {
			return err
		}
		for _, n := range s.objectWarnings(ctx, o) {
			warn(w, n)
		}
		w.Header().Set("X-Gantry-Result", string(res))
		writeJSON(w, http.StatusCreated, o)
		return nil
	case *v1.Secret:
		_, err := s.writeSecret(ctx, o, nil, ri.DryRun)
		if err == nil && ri.DryRun {
			err = s.dryCreate(ctx, ri.Kind, o)
		}
		if err != nil {
			return err
		}
		w.Header().Set("X-Gantry-Result", "created")
		writeJSON(w, http.StatusCreated, redact(o))
		return nil
	}
	if err := s.createOther(ctx, o, ri.DryRun); err != nil {
		return err
	}
	if ri.DryRun {
		if err := s.dryCreate(ctx, ri.Kind, o); err != nil {
			return err
		}
	}
	for _, n := range s.objectWarnings(ctx, o) {
		warn(w, n)
	}
	w.Header().Set("X-Gantry-Result", "created")
	writeJSON(w, http.StatusCreated, redact(o))
	return nil
}

// createOther admits and stores (or, in a dry run, only admits) an
// object of a kind with no create of its own, holding authMu throughout
// for the kinds checked against other auth objects.
func (s *Server) createOther(ctx context.Context, o v1.Object, dry bool) error {
	defer s.lockAuthWrite(o)()
	if err := s.admitOther(ctx, o, nil); err != nil {
		return err
	}
	if dry {
		return nil
	}
	if err := s.store.Create(ctx, o); err != nil {
		return err
	}
	s.afterWrite(o)
	return nil
}

// objectWarnings are the warnings a write of o earns on this server.
func (s *Server) objectWarnings(ctx context.Context, o v1.Object) []string {
	switch o := o.(type) {
	case *v1.App:
		return s.appWarnings(ctx, o)
	case *v1.AlertRule:
		// A rule naming a Notifier that is not there fires unheard: its
		// alert is dropped with a line in the server's log only.
		var out []string
		for _, n := range o.Spec.Notifiers {
			if _, err := store.Get[*v1.Notifier](ctx, s.store, o.Metadata.Namespace, n); errors.Is(err, v1.ErrNotFound) {
				out = append(out, fmt.Sprintf("alertrule/%s names notifier %q, which does not exist in namespace %s: its alerts reach nobody until it does", o.Metadata.Name, n, o.Metadata.Namespace))
			}
		}
		return out
	case *v1.Role:
		return roleWarnings(o)
	}
	return nil
}

// roleVerbs are the verbs requests are authorized for.
var roleVerbs = []string{"get", "list", "watch", "create", "update", "delete", "apply", "pull", "push", "*"}

// otherResources are what RBAC is asked about besides the kinds and their
// subresources, each with its subresources.
var otherResources = map[string][]string{
	"images": nil, "metrics": nil, "secretkeys": nil, "audit": {"export", "verify"}, "registry": {"gc"},
}

// knownResource says whether a Role's resource ("apps", "apps/scale",
// "apps/*", "*") names something requests are authorized for.
func knownResource(res string) bool {
	if res == "*" {
		return true
	}
	base, sub, hasSub := strings.Cut(res, "/")
	if subs, ok := otherResources[base]; ok {
		return !hasSub || sub == "*" && len(subs) > 0 || slices.Contains(subs, sub)
	}
	k, ok := v1.LookupKind(base)
	if !ok || k.Plural != base {
		return false
	}
	if !hasSub {
		return true
	}
	if sub == "*" {
		for ks := range subresources {
			if strings.HasPrefix(ks, k.Kind+"/") {
				return true
			}
		}
		return false
	}
	return subresources[k.Kind+"/"+sub]
}

// roleWarnings name the verbs and resources of a Role that no request is
// authorized for (a typo, such as "apss"): they grant nothing. They are
// stored, as Kubernetes stores them, but the writer is told.
func roleWarnings(r *v1.Role) []string {
	var out []string
	for i, rule := range r.Spec.Rules {
		for _, v := range rule.Verbs {
			if !slices.Contains(roleVerbs, v) {
				out = append(out, fmt.Sprintf("role/%s spec.rules[%d]: verb %q grants nothing; the verbs are %s", r.Metadata.Name, i, v, strings.Join(roleVerbs, ", ")))
			}
		}
		for _, res := range rule.Resources {
			if !knownResource(res) {
				out = append(out, fmt.Sprintf("role/%s spec.rules[%d]: resource %q grants nothing; resources are kinds in the plural (apps, instances, secrets, ...), a kind's subresource (apps/scale, instances/logs, apps/*), images, metrics, audit, registry/gc or secretkeys", r.Metadata.Name, i, res))
			}
		}
	}
	return out
}

// dryCreate fails as the store's create would for an object that exists
// already: a dry run of a create runs every admission check first, as the
// real one does, and then learns this instead of writing.
func (s *Server) dryCreate(ctx context.Context, k *v1.KindInfo, o v1.Object) error {
	m := o.GetMeta()
	_, err := s.store.Get(ctx, k, m.Namespace, m.Name)
	if err == nil {
		return fmt.Errorf("%s %q %w", strings.ToLower(k.Kind), m.Key(), v1.ErrAlreadyExists)
	}
	if errors.Is(err, v1.ErrNotFound) {
		return nil
	}
	return err
}

// dryRunnable refuses a dry run of the kinds whose create is not an
// admission and a write: the server makes up a token's secret, and events
// are written by Gantry itself.
func dryRunnable(o v1.Object) error {
	switch o.(type) {
	case *v1.Token, *v1.JoinToken, *v1.Event:
		return fmt.Errorf("%w: dryRun is not supported for %ss", v1.ErrInvalid, strings.ToLower(o.GetType().Kind))
	}
	return nil
}

// checkNamespace makes sure a namespaced object's namespace exists.
func (s *Server) checkNamespace(ctx context.Context, o v1.Object) error {
	ns := o.GetMeta().Namespace
	if ns == "" {
		return nil
	}
	n, err := s.namespace(ctx, ns)
	if err != nil {
		return err
	}
	return notDeleting(n)
}

// namespace reads a namespace, from the cache when it has it: namespaces
// change rarely and every write in one reads it. A namespace the cache
// does not know (yet) is read from the store.
func (s *Server) namespace(ctx context.Context, name string) (*v1.Namespace, error) {
	if s.namespaces != nil {
		if n, ok := s.namespaces.Get("", name); ok {
			return n, nil
		}
	}
	return s.storedNamespace(ctx, name)
}

// storedNamespace reads a namespace from the store.
func (s *Server) storedNamespace(ctx context.Context, name string) (*v1.Namespace, error) {
	n, err := store.Get[*v1.Namespace](ctx, s.store, "", name)
	if errors.Is(err, v1.ErrNotFound) {
		return nil, fmt.Errorf("%w: namespace %q does not exist: create it with `gantry create namespace %s`", v1.ErrNotFound, name, name)
	}
	return n, err
}

func (s *Server) update(w http.ResponseWriter, r *http.Request, ri *requestInfo) error {
	ctx := r.Context()
	if err := readOnly(ri.Kind, "update"); err != nil {
		return err
	}
	o, err := s.decodeObject(w, r, ri)
	if err != nil {
		return err
	}
	if err := v1.Validate(o).OrNil(); err != nil {
		return err
	}
	apply := ri.Verb == "apply"
	if !apply && o.GetMeta().Revision == 0 {
		return fmt.Errorf("%w: metadata.revision is required for an update (it guards against overwriting someone else's change); use ?apply=true to create or replace", v1.ErrInvalid)
	}
	if _, isApp := o.(*v1.App); !isApp { // admission of Apps reads it
		if err := s.checkNamespace(ctx, o); err != nil {
			return err
		}
	}
	// An apply carries over fields from the stored App (keepLiveFields):
	// each attempt starts again from what the request said.
	// saveApp fills in the stored restart nonce too: an attempt after a
	// restart that won the race kept the nonce from before it, and the
	// apply rolled every instance again.
	restore := func() {}
	if a, ok := o.(*v1.App); ok {
		replicas, paused, nonce := a.Spec.Replicas, a.Spec.Paused, a.Spec.Template.RestartNonce
		restore = func() { a.Spec.Replicas, a.Spec.Paused, a.Spec.Template.RestartNonce = replicas, paused, nonce }
	}
	for attempt := 0; ; attempt++ {
		restore()
		var notes []string
		res, err := s.updateOnce(ctx, ri, o, apply, &notes)
		if apply && raced(err) && attempt < 5 {
			// Apply means "make it so": retry against the fresh
			// object (or, when another apply created it first, against
			// the one it created). Plain updates surface the conflict.
			o.GetMeta().Revision = 0
			continue
		}
		if err != nil {
			return err
		}
		status := http.StatusOK
		if res == "created" {
			status = http.StatusCreated
		}
		w.Header().Set("X-Gantry-Result", res)
		s.markUncomparedValues(ctx, w, o, res)
		// Also when nothing changed: the apply kept what it kept again,
		// and a route's missing certificate is still missing.
		notes = append(notes, s.objectWarnings(ctx, o)...)
		for _, n := range notes {
			warn(w, n)
		}
		writeJSON(w, status, redact(o))
		return nil
	}
}

func (s *Server) updateOnce(ctx context.Context, ri *requestInfo, o v1.Object, apply bool, notes *[]string) (string, error) {
	m := o.GetMeta()
	prev, err := s.store.Get(ctx, ri.Kind, m.Namespace, m.Name)
	if errors.Is(err, v1.ErrNotFound) && apply {
		if err := readOnly(ri.Kind, "create"); err != nil {
			return "", err
		}
		if a, ok := o.(*v1.App); ok {
			res, err := s.saveApp(ctx, a, nil, ri.DryRun)
			return string(res), err
		}
		if sec, ok := o.(*v1.Secret); ok {
			return s.writeSecret(ctx, sec, nil, ri.DryRun)
		}
		if err := s.createOther(ctx, o, ri.DryRun); err != nil {
			return "", err
		}
		return "created", nil
	}
	if err != nil {
		return "", err
	}
	if apply || m.Revision == 0 {
		m.Revision = prev.GetMeta().Revision
	}
	if m.Revision != prev.GetMeta().Revision {
		return "", fmt.Errorf("%s %q was modified (now at revision %d, you sent %d): %w; read it again and retry",
			strings.ToLower(ri.Kind.Kind), m.Key(), prev.GetMeta().Revision, m.Revision, v1.ErrConflict)
	}
	if a, ok := o.(*v1.App); ok {
		if apply {
			*notes = keepLiveFields(a, prev.(*v1.App))
		}
		res, err := s.saveApp(ctx, a, prev.(*v1.App), ri.DryRun)
		return string(res), err
	}
	if sec, ok := o.(*v1.Secret); ok {
		return s.writeSecret(ctx, sec, prev.(*v1.Secret), ri.DryRun)
	}
	pm := prev.GetMeta()
	m.UID, m.Created, m.Deleting = pm.UID, pm.Created, pm.Deleting
	copyStatus(o, prev)
	defer s.lockAuthWrite(o)()
	if err := s.admitOther(ctx, o, prev); err != nil {
		return "", err
	}
	if sameObject(o, prev) {
		return "unchanged", nil
	}
	if ns, ok := prev.(*v1.Namespace); ok {
		// Its delete goes on whatever is written now (a delete stopped
		// half-way is resumed at the new revision): a change would be
		// answered as made, then deleted.
		if err := notDeleting(ns); err != nil {
			return "", fmt.Errorf("%w; apply it again once the delete has finished", err)
		}
	}
	if ri.DryRun {
		return "configured", nil
	}
	if err := s.store.Update(ctx, o); err != nil {
		return "", err
	}
	s.afterWrite(o)
	return "configured", nil
}

// raced reports whether a write lost a race with another writer of the
// same object (the store's compare-and-swap, or a create of the same
// name), which a retry against the fresh object mends. An admission's
// refusal with a status of its own (a route or node port another App
// has: 409 too) is not retried: the next attempt would only be refused
// again.
func raced(err error) bool {
	var se *v1.StatusError
	return (errors.Is(err, v1.ErrConflict) || errors.Is(err, v1.ErrAlreadyExists)) && !errors.As(err, &se)
}

// copyStatus carries the stored status over an update: users write spec,
// controllers and agents write status.
func copyStatus(dst, src v1.Object) {
	d := reflect.ValueOf(dst).Elem().FieldByName("Status")
	sv := reflect.ValueOf(src).Elem().FieldByName("Status")
	if d.IsValid() && sv.IsValid() && d.CanSet() {
		d.Set(sv)
	}
}

func sameObject(a, b v1.Object) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// lockAuthWrite takes authMu for a write of o that is checked against
// other auth objects (a User or RoleBinding), and returns its unlock.
func (s *Server) lockAuthWrite(o v1.Object) (unlock func()) {
	switch o.(type) {
	case *v1.User, *v1.RoleBinding:
		s.authMu.Lock()
		return s.authMu.Unlock
	}
	return func() {}
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request, ri *requestInfo) error {
	ctx := r.Context()
	if err := readOnly(ri.Kind, "delete"); err != nil {
		return err
	}
	var rev int64
	if v := r.URL.Query().Get("revision"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("%w: revision=%q: give the object's metadata.revision, a whole number, to delete only that version", v1.ErrInvalid, v)
		}
		rev = n
	}
	force, err := v1.QueryBool(r.URL.Query(), "force")
	if err != nil {
		return fmt.Errorf("%w: %v", v1.ErrInvalid, err)
	}
	var old v1.Object
	// plain deletes an object with nothing else to delete beside it.
	plain := func() (v1.Object, error) {
		old, err := s.store.Delete(ctx, ri.Kind, ri.Namespace, ri.Name, rev)
		if err == nil {
			s.afterDelete(old)
		}
		return old, err
	}
	switch ri.Kind.Kind {
	case "App":
		old, err = s.deleteApp(ctx, ri.Namespace, ri.Name, rev)
	case "Namespace":
		old, err = s.deleteNamespace(ctx, ri.Name, rev)
	case "Instance":
		old, err = s.deleteInstance(ctx, ri.Namespace, ri.Name, rev, force)
	case "User":
		s.authMu.Lock()
		if err = s.keepsAClusterAdmin(ctx, "deleting user "+ri.Name, func(b *v1.RoleBinding) bool { return b.Spec.User == ri.Name }); err == nil {
			old, err = s.deleteUser(ctx, ri.Name, rev)
		}
		s.authMu.Unlock()
	case "RoleBinding":
		s.authMu.Lock()
		if err = s.keepsAClusterAdmin(ctx, "deleting rolebinding "+ri.Name, func(b *v1.RoleBinding) bool { return b.Metadata.Name == ri.Name }); err == nil {
			old, err = plain()
		}
		s.authMu.Unlock()
	case "Role":
		// A Role that is not stored (a built-in one, or none) is not
		// found, whatever bindings name it.
		s.authMu.Lock()
		if _, err = store.Get[*v1.Role](ctx, s.store, "", ri.Name); err == nil {
			err = s.roleUnbound(ctx, ri.Name)
		}
		if err == nil {
			old, err = plain()
		}
		s.authMu.Unlock()
	default:
		old, err = plain()
	}
	if err != nil {
		return err
	}
	if ri.Kind.Kind == "Notifier" {
		if rules, _, lerr := store.List[*v1.AlertRule](ctx, s.store, store.ListOptions{Namespace: ri.Namespace}); lerr == nil {
			for _, r := range rules {
				if slices.Contains(r.Spec.Notifiers, ri.Name) {
					warn(w, fmt.Sprintf("alertrule/%s names notifier %s, which is gone: its alerts reach nobody until a notifier of that name exists again or the rule names another", r.Metadata.Name, ri.Name))
				}
			}
		}
	}
	writeJSON(w, http.StatusOK, redact(old))
	return nil
}

// roleUnbound refuses the delete of a Role that bindings still name: they
// would stay, granting nothing, until a later Role of the same name,
// perhaps made for something else, gave its rules to them all.
func (s *Server) roleUnbound(ctx context.Context, role string) error {
	bs, _, err := store.List[*v1.RoleBinding](ctx, s.store, store.ListOptions{})
	if err != nil {
		return err
	}
	var names []string
	for _, b := range bs {
		if b.Spec.Role == role {
			names = append(names, b.Metadata.Name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	return fmt.Errorf("%w: role %s is bound by %s: delete those bindings first (gantry delete rolebinding NAME), so that a later role of this name grants nothing unasked", v1.ErrConflict, role, strings.Join(names, ", "))
}

// deleteUser deletes a user, then their tokens and role bindings: both
// name the user only by name, and would otherwise give a later user of
// the same name the old one's credentials and roles. The user goes first,
// so that their tokens stop working even if the rest fails.
func (s *Server) deleteUser(ctx context.Context, name string, rev int64) (v1.Object, error) {
	old, err := s.store.Delete(ctx, store.KindFor[*v1.User](), "", name, rev)
	if err != nil {
		return nil, err
	}
	s.afterDelete(old)
	if err := deleteMatching(ctx, s, func(t *v1.Token) bool { return t.Spec.User == name }); err != nil {
		return nil, fmt.Errorf("user %s was deleted, but not all of their tokens: %w; delete them with `gantry delete token NAME`", name, err)
	}
	if err := deleteMatching(ctx, s, func(b *v1.RoleBinding) bool { return b.Spec.User == name }); err != nil {
		return nil, fmt.Errorf("user %s was deleted, but not all of their role bindings: %w; delete them with `gantry delete rolebinding NAME`", name, err)
	}
	return old, nil
}

// deleteMatching deletes every object of kind T (of every namespace)
// that match picks, keeping the caches in step.
func deleteMatching[T v1.Object](ctx context.Context, s *Server, match func(T) bool) error {
	objs, _, err := store.List[T](ctx, s.store, store.ListOptions{})
	if err != nil {
		return err
	}
	k := store.KindFor[T]()
	for _, o := range objs {
		if !match(o) {
			continue
		}
		old, err := s.store.Delete(ctx, k, o.GetMeta().Namespace, o.GetMeta().Name, 0)
		if errors.Is(err, v1.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("delete %s %s: %w", k.Kind, o.GetMeta().Key(), err)
		}
		s.afterDelete(old)
	}
	return nil
}

// afterWrite and afterDelete keep caches that depend on what was written
// in step.
func (s *Server) afterWrite(o v1.Object) {
	s.dropCached(o)
	s.rightsChanged(o)
}

func (s *Server) afterDelete(o v1.Object) {
	s.dropCached(o)
	switch o := o.(type) {
	case *v1.User:
		if a, ok := s.authn.(interface{ ForgetUser(string) }); ok {
			a.ForgetUser(o.Metadata.Name)
		}
	case *v1.Node:
		s.heartbeats.Forget(context.Background(), o.Metadata.Name)
	}
	s.rightsChanged(o)
}

func (s *Server) dropCached(o v1.Object) {
	switch o := o.(type) {
	case *v1.Role, *v1.RoleBinding:
		if z, ok := s.authz.(interface{ Invalidate() }); ok {
			z.Invalidate()
		}
	case *v1.Token:
		if a, ok := s.authn.(interface{ Forget(string) }); ok {
			a.Forget(o.Metadata.Name)
		}
	case *v1.User:
		if a, ok := s.authn.(interface{ ForgetUser(string) }); ok && o.Spec.Disabled {
			a.ForgetUser(o.Metadata.Name)
		}
	}
}

// rightsChanged moves the auth epoch on after a write that may take
// rights away, once the caches are dropped: running watches check their
// callers again.
func (s *Server) rightsChanged(o v1.Object) {
	switch o.(type) {
	case *v1.Role, *v1.RoleBinding, *v1.Token, *v1.User:
		s.authEpoch.bump()
	}
}

// redact hides what must never leave the server: token hashes and secret
// values (revealed only through their own subresource).
func redact(o v1.Object) v1.Object {
	switch t := o.(type) {
	case *v1.Token:
		c := *t
		c.Spec.Hash = ""
		return &c
	case *v1.JoinToken:
		c := *t
		c.Spec.Hash = ""
		return &c
	}
	if r, ok := o.(interface{ Redacted() v1.Object }); ok {
		return r.Redacted()
	}
	return o
}

// nodeEvent checks an event a node reports: it must be about an instance
// bound to that node, in the instance's namespace. Its source and app
// label are set here, not taken from the node, so that a node cannot
// speak for the controllers (whose events reach chat notifiers) or for
// another node.
func (s *Server) nodeEvent(ctx context.Context, node string, e *v1.Event) error {
	attrs := auth.Attributes{Verb: "create", Resource: "events", Namespace: e.Metadata.Namespace, Name: e.Metadata.Name}
	if e.Object.Kind != "Instance" {
		return auth.Forbidden(IdentityFrom(ctx), attrs, "a node reports events about instances only")
	}
	inst, err := store.Get[*v1.Instance](ctx, s.store, e.Metadata.Namespace, e.Object.Name)
	if errors.Is(err, v1.ErrNotFound) || err == nil && inst.Spec.Node != node {
		return auth.Forbidden(IdentityFrom(ctx), attrs, "instance "+e.Object.Name+" is not bound to node "+node)
	}
	if err != nil {
		return err
	}
	e.Source = "agent/" + node
	e.Metadata.Labels = nil
	if app := inst.Spec.App; app != "" {
		e.Metadata.Labels = map[string]string{v1.LabelApp: app}
	}
	return nil
}
