package registry

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// Identity is who a request acts as once its credentials check out.
type Identity struct {
	User string
	// Node is set when the credential is a node's: the Authorizer may
	// let nodes pull what is scheduled on them and nothing else.
	Node string
	// Credential names the platform token the identity was proven with,
	// if the Authenticator says (see CredentialChecker). Registry tokens
	// issued on its strength carry it.
	Credential string
}

// String names the identity in messages: "user alice" or "node n1".
func (id Identity) String() string {
	if id.Node != "" {
		return "node " + id.Node
	}
	return "user " + id.User
}

// Authenticator turns a platform token into an Identity. A token that is
// unknown, expired or revoked is an error; an error wrapping
// v1.ErrUnavailable (the store is down) is answered 503 instead of 401.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (Identity, error)
}

// CredentialChecker is an Authenticator that can tell whether the
// platform token an Identity.Credential names may still be used. With
// it, a registry token stops working as soon as the token it was issued
// for is revoked or its user disabled, instead of at its own expiry.
type CredentialChecker interface {
	CredentialValid(ctx context.Context, credential string) error
}

// Authorizer decides whether an identity may act on a Gantry namespace.
// Actions are "pull" (read on the namespace), "push" and "delete" (write).
// A nil error allows; the error's text is shown to the client as the
// reason of the 403, so it should name what is missing.
type Authorizer interface {
	Authorize(ctx context.Context, id Identity, namespace, action string) error
}

// caller is an authenticated request's identity, and the registry token
// it presented, if any: a token limits the request to the scopes in it.
type caller struct {
	id    Identity
	token *claims
}

// authFailure is why a request could not be authenticated.
type authFailure struct {
	err          error
	unavailable  bool   // the Authenticator could not answer
	tooMany      bool   // the source failed too often lately
	anonymous    bool   // the request presented no credentials
	tokenProblem string // "invalid_token" for a bad registry token
}

// tooManyFailures is the failure of a source that keeps guessing.
var tooManyFailures = &authFailure{err: errors.New("too many failed authentications from this address; wait and retry"), tooMany: true}

// sourceOf is the client address of a request, for rate limiting.
func sourceOf(req *http.Request) string {
	host, _, err := net.SplitHostPort(req.RemoteAddr)
	if err != nil {
		return req.RemoteAddr
	}
	return host
}

// authenticate resolves a request's credentials. A source that keeps
// failing gets 429 for each further failing request, but valid
// credentials in use lately are served from it: many users may share its
// address. Other platform tokens from it are refused unread (no store
// read for a flood of made-up ones).
func (r *Registry) authenticate(req *http.Request) (*caller, *authFailure) {
	blocked := req.Header.Get("Authorization") != "" && r.limiter.Blocked(sourceOf(req), time.Now())
	c, fail := r.authenticate1(req, blocked)
	return c, r.failed(req, fail, blocked)
}

// failed counts a failed authentication against its source, and turns
// it into tooManyFailures when the source was over its budget already. A
// request without credentials guessed nothing and is not counted: every
// Docker, containerd or skopeo client starts with one to learn the
// challenge, and a host pulling many images at once would otherwise use
// up its address's budget, and then its users' tokens not used lately
// would get 429.
func (r *Registry) failed(req *http.Request, fail *authFailure, blocked bool) *authFailure {
	if fail == nil || fail.unavailable || fail.tooMany || fail.anonymous {
		return fail
	}
	if blocked {
		return tooManyFailures
	}
	r.limiter.Fail(sourceOf(req), time.Now())
	return fail
}

func (r *Registry) authenticate1(req *http.Request, blocked bool) (*caller, *authFailure) {
	h := req.Header.Get("Authorization")
	scheme, cred, _ := strings.Cut(h, " ")
	cred = strings.TrimSpace(cred)
	switch {
	case h == "":
		return nil, &authFailure{err: errors.New("authentication required: log in with a Gantry token as the password"), anonymous: true}
	case strings.EqualFold(scheme, "Basic"):
		raw, err := base64.StdEncoding.DecodeString(cred)
		if err != nil {
			return nil, &authFailure{err: errors.New("malformed Basic credentials")}
		}
		_, password, ok := strings.Cut(string(raw), ":")
		if !ok || password == "" {
			return nil, &authFailure{err: errors.New("Basic credentials need a Gantry token as the password")}
		}
		return r.platformToken(req.Context(), password, blocked)
	case strings.EqualFold(scheme, "Bearer") && isOurs(cred):
		c, err := r.signer.verify(cred)
		if err != nil {
			return nil, &authFailure{err: err, tokenProblem: "invalid_token"}
		}
		if cc, ok := r.cfg.Authenticator.(CredentialChecker); ok && c.Credential != "" {
			if err := cc.CredentialValid(req.Context(), c.Credential); err != nil {
				if errors.Is(err, v1.ErrUnavailable) {
					return nil, &authFailure{err: err, unavailable: true}
				}
				return nil, &authFailure{err: fmt.Errorf("the token this registry token was issued for no longer works (revoked, expired or its user disabled): %w", err), tokenProblem: "invalid_token"}
			}
		}
		return &caller{id: c.identity(), token: c}, nil
	case strings.EqualFold(scheme, "Bearer"):
		// A platform token sent as a bearer token, as curl users do.
		return r.platformToken(req.Context(), cred, blocked)
	default:
		return nil, &authFailure{err: fmt.Errorf("unsupported authorization scheme %q", scheme)}
	}
}

func (r *Registry) platformToken(ctx context.Context, tok string, blocked bool) (*caller, *authFailure) {
	if k, ok := r.cfg.Authenticator.(interface{ Known(string) bool }); blocked && ok && !k.Known(tok) {
		return nil, tooManyFailures
	}
	id, err := r.cfg.Authenticator.Authenticate(ctx, tok)
	if err != nil {
		return nil, &authFailure{err: fmt.Errorf("token rejected: %w", err), unavailable: errors.Is(err, v1.ErrUnavailable)}
	}
	return &caller{id: id}, nil
}

// challenge answers 401 with the Bearer challenge that sends Docker-style
// clients to the token endpoint for the scope this request needs.
func (r *Registry) challenge(w http.ResponseWriter, req *http.Request, scope, errParam, message string) {
	v := fmt.Sprintf(`Bearer realm=%q,service=%q`, r.realm(req), r.cfg.Service)
	if scope != "" {
		v += fmt.Sprintf(`,scope=%q`, scope)
	}
	if errParam != "" {
		v += fmt.Sprintf(`,error=%q`, errParam)
	}
	w.Header().Set("WWW-Authenticate", v)
	var detail any
	if scope != "" {
		detail = map[string]string{"scope": scope}
	}
	writeError(w, http.StatusUnauthorized, codeUnauthorized, message, detail)
}

// realm is the token endpoint's URL: from Config.PublicURL, or else from
// the request, so that a registry reached as 127.0.0.1:5000 and as
// registry.example.com sends each client back to the address it used.
func (r *Registry) realm(req *http.Request) string {
	if r.cfg.PublicURL != "" {
		return strings.TrimSuffix(r.cfg.PublicURL, "/") + "/v2/token"
	}
	scheme := "http"
	if req.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + req.Host + "/v2/token"
}

// scopeString renders accesses as Docker token scopes, one per repository
// with its actions joined: "repository:team/app:pull,push".
func scopeString(acc []access) string {
	var order []string
	actions := map[string][]string{}
	for _, a := range acc {
		if _, ok := actions[a.repo]; !ok {
			order = append(order, a.repo)
		}
		if !slices.Contains(actions[a.repo], a.action) {
			actions[a.repo] = append(actions[a.repo], a.action)
		}
	}
	parts := make([]string, 0, len(order))
	for _, repo := range order {
		parts = append(parts, "repository:"+repo+":"+strings.Join(actions[repo], ","))
	}
	return strings.Join(parts, " ")
}

// authorize checks every access a request needs and answers the request
// itself when one is missing: 403 DENIED naming the permission when the
// Authorizer refuses, 401 insufficient_scope when the Authorizer would
// allow but the presented registry token was issued without that scope
// (the client then fetches a wider token), 503 when the Authorizer cannot
// answer. It returns true when the request may proceed.
func (r *Registry) authorize(w http.ResponseWriter, req *http.Request, c *caller, acc []access) bool {
	var missingScope bool
	for _, a := range acc {
		// A registry token's scope narrows what its holder may do, never
		// widens it: a role taken away since it was issued counts now.
		if err := r.cfg.Authorizer.Authorize(req.Context(), c.id, a.namespace(), a.action); err != nil {
			if errors.Is(err, v1.ErrUnavailable) {
				writeError(w, http.StatusServiceUnavailable, codeUnavailable, "cannot check permissions now, retry shortly", nil)
				return false
			}
			msg := fmt.Sprintf("%s may not %s %s: %v (%s needs %s on namespace %s)",
				c.id, a.action, a.repo, err, a.action, permissionFor(a.action), a.namespace())
			writeError(w, http.StatusForbidden, codeDenied, msg,
				map[string]string{"repository": a.repo, "namespace": a.namespace(), "action": a.action, "permission": permissionFor(a.action)})
			r.log.Info("registry: request denied", "user", c.id.User, "node", c.id.Node, "repo", a.repo, "action", a.action, "reason", err)
			return false
		}
		if c.token != nil && !c.token.allows("repository", a.repo, a.action) {
			missingScope = true
		}
	}
	if missingScope {
		r.challenge(w, req, scopeString(acc), "insufficient_scope", "the registry token does not carry the scope this request needs; fetch a new one")
		return false
	}
	return true
}

// permissionFor maps a registry action onto the namespace permission it
// needs, for messages.
func permissionFor(action string) string {
	if action == "pull" {
		return "read"
	}
	return "write"
}

// tokenResponse is the body the Docker token flow expects. Both "token"
// and "access_token" are set because clients read one or the other.
type tokenResponse struct {
	Token       string `json:"token"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int    `json:"expires_in"`
	IssuedAt    string `json:"issued_at"`
}

// serveToken is the realm of the Bearer challenge. It takes a platform
// token (Basic password, OAuth2 password grant or a Bearer header) and the
// requested scopes, asks the Authorizer about each action, and signs a
// short-lived token granting the allowed ones. Like other token servers it
// grants a subset rather than failing, and the registry then answers the
// actual request 403 with the reason.
// serveToken exchanges a platform token for a registry token; who, when
// not nil, learns whom it was issued to (for the audit).
func (r *Registry) serveToken(w http.ResponseWriter, req *http.Request, who *Identity) {
	var (
		secret string
		scopes []string
	)
	switch req.Method {
	case http.MethodGet:
		scopes = req.URL.Query()["scope"]
		if _, p, ok := req.BasicAuth(); ok {
			secret = p
		} else if s, tok, ok := strings.Cut(req.Header.Get("Authorization"), " "); ok && strings.EqualFold(s, "Bearer") && !isOurs(tok) {
			secret = strings.TrimSpace(tok)
		}
	case http.MethodPost:
		// The OAuth2 password grant containerd tries first.
		if err := req.ParseForm(); err != nil {
			writeOAuthError(w, http.StatusBadRequest, "invalid_request", err.Error())
			return
		}
		if gt := req.PostForm.Get("grant_type"); gt != "password" {
			writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", "only the password grant is supported; use a Gantry token as the password")
			return
		}
		secret = req.PostForm.Get("password")
		scopes = strings.Fields(req.PostForm.Get("scope"))
	default:
		w.Header().Set("Allow", "GET, POST")
		writeError(w, http.StatusMethodNotAllowed, codeUnsupported, "use GET or POST", nil)
		return
	}
	if secret == "" {
		w.Header().Set("WWW-Authenticate", `Basic realm="gantry"`)
		writeError(w, http.StatusUnauthorized, codeUnauthorized, "log in with a Gantry token as the password", nil)
		return
	}
	blocked := r.limiter.Blocked(sourceOf(req), time.Now())
	c, fail := r.platformToken(req.Context(), secret, blocked)
	if fail = r.failed(req, fail, blocked); fail != nil && fail.tooMany {
		w.Header().Set("Retry-After", "1") // the failure budget refills at several a second
		writeError(w, http.StatusTooManyRequests, codeTooManyRequests, tooManyFailures.err.Error(), nil)
		return
	}
	if fail != nil {
		if fail.unavailable {
			writeError(w, http.StatusServiceUnavailable, codeUnavailable, "cannot check credentials now, retry shortly", nil)
			return
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="gantry"`)
		writeError(w, http.StatusUnauthorized, codeUnauthorized, fail.err.Error(), nil)
		return
	}
	if who != nil {
		*who = c.id
	}
	grants, err := r.grant(req.Context(), c.id, scopes)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, codeUnavailable, "cannot check permissions now, retry shortly", nil)
		return
	}
	now := r.signer.now()
	cl := &claims{
		Issuer:     r.signer.issuer,
		Audience:   r.signer.audience,
		Subject:    c.id.User,
		Node:       c.id.Node,
		Credential: c.id.Credential,
		IssuedAt:   now.Unix(),
		NotBefore:  now.Unix(),
		Expires:    now.Add(r.cfg.TokenTTL).Unix(),
		Access:     grants,
	}
	tok, err := r.signer.sign(cl)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "UNKNOWN", "cannot sign token", nil)
		return
	}
	body, _ := json.Marshal(tokenResponse{
		Token:       tok,
		AccessToken: tok,
		ExpiresIn:   int(r.cfg.TokenTTL / time.Second),
		IssuedAt:    now.UTC().Format(time.RFC3339),
	})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(body)
}

func writeOAuthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

// grant works out which of the requested scopes the identity holds.
// Scopes are "type:name:actions"; only repository scopes and the catalog
// are known. Names that are not valid repositories get nothing.
func (r *Registry) grant(ctx context.Context, id Identity, scopes []string) ([]scopeGrant, error) {
	var out []scopeGrant
	for _, field := range scopes {
		for _, s := range strings.Fields(field) {
			typ, rest, ok := strings.Cut(s, ":")
			i := strings.LastIndexByte(rest, ':')
			if !ok || i < 0 {
				continue
			}
			name, actions := rest[:i], strings.Split(rest[i+1:], ",")
			if t, _, ok := strings.Cut(typ, "("); ok { // "repository(plugin)"
				typ = t
			}
			switch typ {
			case "registry":
				if name == "catalog" {
					out = append(out, scopeGrant{Type: "registry", Name: "catalog", Actions: []string{"*"}})
				}
			case "repository":
				if validateRepo(name) != nil {
					continue
				}
				g := scopeGrant{Type: "repository", Name: name, Actions: []string{}}
				for _, a := range expandActions(actions) {
					ns, _, _ := strings.Cut(name, "/")
					err := r.cfg.Authorizer.Authorize(ctx, id, ns, a)
					if errors.Is(err, v1.ErrUnavailable) {
						return nil, err
					}
					if err == nil {
						g.Actions = append(g.Actions, a)
					}
				}
				out = append(out, g)
			}
		}
	}
	return out, nil
}

func expandActions(actions []string) []string {
	var out []string
	for _, a := range actions {
		switch a {
		case "*":
			for _, x := range []string{"pull", "push", "delete"} {
				if !slices.Contains(out, x) {
					out = append(out, x)
				}
			}
		case "pull", "push", "delete":
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	return out
}
