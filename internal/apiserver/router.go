package apiserver

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/auth"
)

// requestInfo is what a request is about, parsed from its path and method.
type requestInfo struct {
	Kind      *v1.KindInfo
	Namespace string
	Name      string
	Sub       string
	Verb      string
	// AllNamespaces is a list or watch of a namespaced kind across every
	// namespace (/api/v1/apps).
	AllNamespaces bool
	// DryRun (?dryRun=true, or Kubernetes' ?dryRun=All) runs a create,
	// update or apply through every check and answers what it would
	// store, without storing anything.
	DryRun bool
	// OwnTokens is a request on tokens that the authorizer refused and
	// that is served for the caller's own tokens only (owntokens.go).
	OwnTokens bool
	// authEpoch is the server's auth epoch before the caller was
	// authenticated: a watch checks its caller again if it moved on.
	authEpoch uint64
}

func (ri *requestInfo) attributes() auth.Attributes {
	return auth.Attributes{Verb: ri.Verb, Resource: ri.Kind.Plural, Subresource: ri.Sub, Namespace: ri.Namespace, Name: ri.Name}
}

// parseRequest maps /api/v1/... onto a kind, namespace, name and
// subresource:
//
//	/api/v1/{plural}                              list across namespaces, or cluster-scoped
//	/api/v1/{plural}/{name}[/{sub}]               cluster-scoped object
//	/api/v1/namespaces/{ns}/{plural}              namespaced collection
//	/api/v1/namespaces/{ns}/{plural}/{name}[/{sub}]
func parseRequest(r *http.Request) (*requestInfo, error) {
	rest := strings.Trim(strings.TrimPrefix(r.URL.Path, "/api/v1"), "/")
	parts := strings.Split(rest, "/")
	if rest == "" || len(parts) == 0 {
		return nil, fmt.Errorf("%w: name a resource, as in /api/v1/namespaces/default/apps", v1.ErrNotFound)
	}
	ri := &requestInfo{}
	if parts[0] == "namespaces" && len(parts) >= 3 {
		ri.Namespace = parts[1]
		parts = parts[2:]
	}
	k, ok := v1.LookupKind(parts[0])
	if !ok || k.Plural != parts[0] {
		return nil, fmt.Errorf("%w: unknown resource %q", v1.ErrNotFound, parts[0])
	}
	ri.Kind = k
	if len(parts) > 1 {
		ri.Name = parts[1]
	}
	if len(parts) > 2 {
		ri.Sub = parts[2]
		if !subresources[k.Kind+"/"+ri.Sub] {
			// Refused before anything records it: the path would
			// otherwise name a metrics series of its own.
			return nil, fmt.Errorf("%w: %s have no subresource %q", v1.ErrNotFound, k.Plural, ri.Sub)
		}
	}
	if len(parts) > 3 {
		return nil, fmt.Errorf("%w: path %s is too long", v1.ErrNotFound, r.URL.Path)
	}
	if k.Namespaced && ri.Namespace == "" {
		if ri.Name != "" {
			return nil, fmt.Errorf("%w: %s are namespaced: use /api/v1/namespaces/NS/%s/%s", v1.ErrNotFound, k.Plural, k.Plural, ri.Name)
		}
		ri.AllNamespaces = true
	}
	if !k.Namespaced && ri.Namespace != "" {
		return nil, fmt.Errorf("%w: %s are cluster-scoped: use /api/v1/%s", v1.ErrNotFound, k.Plural, k.Plural)
	}
	for _, seg := range []string{ri.Namespace, ri.Name} {
		msg := v1.ValidateName(seg, 253)
		if seg == "" || msg == "" || k.Kind == "Event" && seg == ri.Name {
			continue
		}
		if seg == ri.Name && r.Method == http.MethodPut && ri.Sub == "" {
			// An update or apply (which may create) of a name that
			// cannot be: the body's own name would be refused so.
			return nil, v1.FieldErrors{{Field: "metadata.name", Message: fmt.Sprintf("%q: %s", seg, msg)}}
		}
		return nil, fmt.Errorf("%w: %q is not a valid name", v1.ErrNotFound, seg)
	}
	q := r.URL.Query()
	var watch, apply bool
	var err error
	switch {
	case ri.Name == "" && r.Method == http.MethodGet:
		watch, err = v1.QueryBool(q, "watch")
	case r.Method == http.MethodPut && ri.Sub == "":
		apply, err = v1.QueryBool(q, "apply")
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", v1.ErrInvalid, err)
	}
	switch {
	case watch:
		ri.Verb = "watch"
	case ri.Name == "" && r.Method == http.MethodGet:
		ri.Verb = "list"
	case ri.Name == "" && r.Method == http.MethodPost:
		ri.Verb = "create"
	case ri.Name == "":
		return nil, methodNotAllowed(r)
	case r.Method == http.MethodGet:
		ri.Verb = "get"
	case r.Method == http.MethodPatch:
		// A PATCH would be read as a whole object and replace
		// everything it leaves out.
		return nil, &v1.StatusError{Status: v1.Status{Code: http.StatusMethodNotAllowed, Reason: "MethodNotAllowed",
			Message: fmt.Sprintf("PATCH is not supported on %s: PUT the whole object (with ?apply=true to create or replace it)", r.URL.Path)}}
	case r.Method == http.MethodPut:
		ri.Verb = "update"
		if apply {
			ri.Verb = "apply"
		}
	case r.Method == http.MethodPost && ri.Sub == "":
		// A named object takes GET, PUT and DELETE (docs/api.md); a
		// POST here was served as a create of it.
		return nil, &v1.StatusError{Status: v1.Status{Code: http.StatusMethodNotAllowed, Reason: "MethodNotAllowed",
			Message: fmt.Sprintf("POST is not allowed on %s: create by POST to the collection (%s), or PUT ?apply=true here to create or replace", r.URL.Path, strings.TrimSuffix(r.URL.Path, "/"+ri.Name))}}
	case r.Method == http.MethodPost:
		ri.Verb = "update"
	case r.Method == http.MethodDelete:
		ri.Verb = "delete"
	default:
		return nil, methodNotAllowed(r)
	}
	switch dry := q.Get("dryRun"); dry {
	case "", "false":
	case "true", "All":
		if ri.Sub != "" || (ri.Verb != "create" && ri.Verb != "update" && ri.Verb != "apply") {
			return nil, fmt.Errorf("%w: dryRun works on create (POST), update and apply (PUT) of an object, not on %s %s", v1.ErrInvalid, r.Method, r.URL.Path)
		}
		ri.DryRun = true
	default:
		return nil, fmt.Errorf("%w: dryRun=%q: use dryRun=true (or All)", v1.ErrInvalid, dry)
	}
	// Subresources that read are "get" and answer GET only; exec is
	// "create" as in Kubernetes, by POST; the rest change the object.
	switch ri.Sub {
	case "metrics":
		switch r.Method {
		case http.MethodGet:
			ri.Verb = "get"
		case http.MethodPost, http.MethodPut: // a node's report
		default:
			return nil, methodNotAllowed(r)
		}
	case "logs", "reveal":
		if r.Method != http.MethodGet {
			return nil, methodNotAllowed(r)
		}
		ri.Verb = "get"
	case "exec":
		if r.Method != http.MethodPost {
			return nil, methodNotAllowed(r)
		}
		ri.Verb = "create"
	case "register", "heartbeat":
		// An agent's writes: another method must not do them under
		// the verb it maps to (a GET is authorized as "get").
		if r.Method != http.MethodPost {
			return nil, methodNotAllowed(r)
		}
	case "status":
		switch r.Method {
		case http.MethodGet, http.MethodPut, http.MethodPost:
		default:
			return nil, methodNotAllowed(r)
		}
	case "test":
		ri.Verb = "update"
	}
	return ri, nil
}

func methodNotAllowed(r *http.Request) error {
	return &v1.StatusError{Status: v1.Status{Code: http.StatusMethodNotAllowed, Reason: "MethodNotAllowed", Message: fmt.Sprintf("%s is not allowed on %s", r.Method, r.URL.Path)}}
}

// statusRecorder captures the status code for audit and metrics.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w}
	id := auth.Anonymous
	var ri *requestInfo
	reason := ""
	defer func() {
		if v := recover(); v != nil {
			s.finish(r, rec, ri, id, start, panicked(rec, v))
			panic(v) // withRecover answers it
		}
		s.finish(r, rec, ri, id, start, reason)
	}()
	epoch := s.authEpoch.load()
	var err error
	id, err = s.authenticate(r)
	if err != nil {
		id = auth.Anonymous
		reason = "authentication failed"
		writeError(rec, err)
		return
	}
	ri, err = parseRequest(r)
	if err != nil {
		writeError(rec, err)
		return
	}
	ri.authEpoch = epoch
	if err := s.authz.Authorize(r.Context(), id, ri.attributes()); err != nil {
		if !errors.Is(err, v1.ErrForbidden) || !ownTokenRequest(id, ri) {
			reason = "denied"
			writeError(rec, err)
			return
		}
		// Served for the caller's own tokens only; another's gets
		// the authorizer's answer.
		ri.OwnTokens = true
		if ri.Name != "" {
			own, oerr := s.ownsToken(r.Context(), id, ri.Name)
			if oerr != nil || !own {
				if oerr == nil {
					reason = "denied"
					oerr = err
				}
				writeError(rec, oerr)
				return
			}
		}
	}
	ctx := r.Context()
	ctx = contextWith(ctx, id, ri)
	s.dispatch(rec, r.WithContext(ctx), ri)
}

// panicked is the audit reason of a request whose handler panicked with
// v, and records as its status the 500 withRecover answers, unless an
// answer had begun (the client then has a broken one).
func panicked(rec *statusRecorder, v any) string {
	if v == http.ErrAbortHandler {
		return "cut short" // a stream ended on purpose, mid-answer
	}
	if rec.status == 0 {
		rec.status = http.StatusInternalServerError
	}
	return "panic"
}

func (s *Server) finish(r *http.Request, rec *statusRecorder, ri *requestInfo, id *auth.Identity, start time.Time, reason string) {
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	e := AuditEntry{
		Time: start.UTC(), RequestID: requestID(r.Context()), User: id.User, Source: sourceIP(r),
		Method: r.Method, Path: r.URL.Path, Status: status, Duration: time.Since(start), Reason: reason,
	}
	route := "unknown"
	if ri != nil {
		e.Verb, e.Resource, e.Sub, e.Namespace, e.Name = ri.Verb, ri.Kind.Plural, ri.Sub, ri.Namespace, ri.Name
		route = ri.Kind.Plural
		if ri.DryRun && e.Reason == "" {
			e.Reason = "dry run"
		}
		if ri.Sub != "" {
			route += "/" + ri.Sub
		}
	}
	if s.auditor != nil {
		s.auditor.Record(r.Context(), e)
	}
	if s.metrics != nil {
		s.metrics.observe(route, e.Verb, status, e.Duration, streams(r, ri))
	}
}

// streams reports whether a request is a stream that lasts as long as the
// client wants (a watch, a log follow, an exec session): its duration is
// not a latency.
func streams(r *http.Request, ri *requestInfo) bool {
	if ri == nil {
		return false
	}
	switch {
	case ri.Verb == "watch", ri.Sub == "exec":
		return true
	case ri.Sub == "logs":
		follow, _ := v1.QueryBool(r.URL.Query(), "follow")
		return follow
	}
	return false
}

func sourceIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
