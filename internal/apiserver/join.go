package apiserver

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/pki"
	"github.com/gantry-dev/gantry/internal/store"
)

// WithCA lets the server issue join tokens and node certificates.
func WithCA(ca *pki.CA) Option { return func(s *Server) { s.ca = ca } }

// WithRegistryHost tells joining agents where the registry is.
func WithRegistryHost(h string) Option { return func(s *Server) { s.registryHost = h } }

// JoinRequest is what an agent sends to join.
type JoinRequest struct {
	Node  string `json:"node"`
	Token string `json:"token"`
	// CSR is the PEM certificate request of the node's key.
	CSR string `json:"csr"`
}

// JoinResponse hands a joining agent its identity.
type JoinResponse struct {
	// Certificate is the node's client certificate (PEM).
	Certificate string `json:"certificate"`
	// ServerCertificate is the certificate of the agent's own listener,
	// for the same key, naming the node and the address it joined from.
	ServerCertificate string `json:"serverCertificate"`
	CA                string `json:"ca"`
	// RegistryToken is a node token for pulling from the registry.
	RegistryToken string `json:"registryToken"`
	Registry      string `json:"registry,omitempty"`
}

// CreatedJoinToken is the answer of a join token creation; Token is
// shown once.
type CreatedJoinToken struct {
	v1.JoinToken
	Token string `json:"token"`
}

// createJoinToken makes a join token (cluster admins: create jointokens).
func (s *Server) createJoinToken(w http.ResponseWriter, r *http.Request, jt *v1.JoinToken) error {
	if s.ca == nil {
		return fmt.Errorf("%w: this server has no CA (started without TLS)", v1.ErrUnavailable)
	}
	ttl := pki.DefaultJoinTokenTTL
	// ?ttl= counts on the server's clock (gantry join-token create sends
	// it): an expiry computed on a client whose clock is off would make
	// the token last longer than asked, or refuse it as past.
	if v := r.URL.Query().Get("ttl"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("%w: ttl=%q: give a lifetime such as 1h or 24h", v1.ErrInvalid, v)
		}
		if !jt.Spec.Expires.IsZero() {
			return fmt.Errorf("%w: give ttl or spec.expires, not both", v1.ErrInvalid)
		}
		ttl = d
	} else if !jt.Spec.Expires.IsZero() {
		ttl = time.Until(jt.Spec.Expires)
		if ttl <= 0 {
			return v1.FieldErrors{{Field: "spec.expires", Message: fmt.Sprintf("%s is not in the future (the server's time is %s)", jt.Spec.Expires.UTC().Format(time.RFC3339), time.Now().UTC().Format(time.RFC3339))}}
		}
	}
	tok, rec, err := pki.NewJoinToken(s.ca.Pin(), ttl, time.Now())
	if err != nil {
		return err
	}
	out := &v1.JoinToken{TypeMeta: v1.TypeMeta{Kind: "JoinToken"}, Metadata: v1.ObjectMeta{Name: rec.ID},
		Spec: v1.JoinTokenSpec{Hash: rec.Hash, Expires: rec.Expires, Description: jt.Spec.Description}}
	if err := s.store.Create(r.Context(), out); err != nil {
		return err
	}
	out.Spec.Hash = ""
	writeJSON(w, http.StatusCreated, CreatedJoinToken{JoinToken: *out, Token: tok})
	return nil
}

// serveJoin lets an agent trade a join token and a certificate request
// for its node certificate. It is the one unauthenticated write: the join
// token is the credential.
func (s *Server) serveJoin(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w}
	ri := &requestInfo{Kind: &v1.KindInfo{Kind: "Node", Plural: "nodes"}, Verb: "create", Sub: "join"}
	reason := ""
	id := auth.Anonymous
	defer func() { s.finish(r, rec, ri, id, start, reason) }()
	src := sourceIP(r)
	if s.limiter.Blocked(src, start) {
		writeError(rec, fmt.Errorf("%w: too many failed joins from %s", v1.ErrTooManyRequest, src))
		return
	}
	var req JoinRequest
	if err := decodeBody(rec, r, 64<<10, &req); err != nil {
		// Garbage counts against the source like a wrong token: this
		// endpoint answers anyone.
		s.limiter.Fail(src, start)
		writeError(rec, err)
		return
	}
	ri.Name = req.Node
	resp, err := s.join(r.Context(), req, src)
	if err != nil {
		if errors.Is(err, v1.ErrUnauthorized) {
			s.limiter.Fail(src, start)
			reason = "authentication failed"
		}
		writeError(rec, err)
		return
	}
	id = &auth.Identity{User: auth.NodeUser(req.Node), Node: req.Node}
	writeJSON(rec, http.StatusOK, resp)
}

func (s *Server) join(ctx context.Context, req JoinRequest, src string) (*JoinResponse, error) {
	if s.ca == nil {
		return nil, fmt.Errorf("%w: this server has no CA (started without TLS)", v1.ErrUnavailable)
	}
	if msg := v1.ValidateName(req.Node, 63); msg != "" {
		return nil, v1.FieldErrors{{Field: "node", Message: msg}}
	}
	jc, err := pki.ParseJoinToken(req.Token)
	if err != nil {
		return nil, err
	}
	jt, err := store.Get[*v1.JoinToken](ctx, s.store, "", jc.ID)
	if errors.Is(err, v1.ErrNotFound) {
		return nil, pki.ErrInvalidJoinToken
	}
	if err != nil {
		return nil, err
	}
	if err := (pki.JoinToken{ID: jt.Metadata.Name, Hash: jt.Spec.Hash, Expires: jt.Spec.Expires}).Verify(req.Token, time.Now()); err != nil {
		return nil, err
	}
	// A join takes over the name's identity (certificates, registry
	// token, the Node's agent address): refused while a node of that
	// name is alive, so that a join token cannot take a live node's
	// place. A dead node's name may be joined again (a reinstall).
	unlock := s.identities.Lock(req.Node)
	defer unlock()
	n, err := store.Get[*v1.Node](ctx, s.store, "", req.Node)
	switch {
	case err == nil && n.Status.Ready:
		return nil, fmt.Errorf("%w: node %q is registered and sending heartbeats; stop its agent (or pick another name) to join under it", v1.ErrConflict, req.Node)
	case err != nil && !errors.Is(err, v1.ErrNotFound):
		return nil, err
	}
	// Signed before anything is written: a join refused for its
	// certificate request leaves a dead node's labels and instances be.
	id, err := s.signIdentity(req.Node, req.CSR, src)
	if err != nil {
		return nil, err
	}
	if n != nil {
		if err := s.forgetNodeTrust(ctx, req.Node, id.since); err != nil {
			return nil, err
		}
	}
	return s.handOut(ctx, req.Node, id, false)
}

// forgetNodeTrust is what a join under a dead node's name takes from it:
// a join token says a machine may join, not that it is the machine that
// had the name. The machine that had it loses it: its certificates start
// before since, which becomes the Node's status.joinedAt, and are refused
// from then on (it would otherwise come back and run the same instances
// as the one that joined). The admin-set node-restriction labels go (a
// cluster admin sets them again for a reinstalled machine), and so do the
// instances bound to it, whose secrets it could read: they are placed
// again, as a dead node's are. Finished ones stay, as a dead node's do
// (placed again, they would run finished work twice); no node may read
// the secrets of a finished instance, which never runs again.
func (s *Server) forgetNodeTrust(ctx context.Context, node string, since time.Time) error {
	_, err := store.Mutate(ctx, s.store, "", node, func(n *v1.Node) error {
		for k := range n.Metadata.Labels {
			if strings.HasPrefix(k, v1.LabelNodeRestrictionPrefix) {
				delete(n.Metadata.Labels, k)
			}
		}
		// The last join's, whatever the one before it said: joins of a
		// name are one at a time (s.identities), and a server clock
		// stepped back since the last one must not refuse this one.
		n.Status.JoinedAt = &since
		return nil
	})
	if err != nil && !errors.Is(err, v1.ErrNotFound) {
		return fmt.Errorf("clear the labels of node %s: %w", node, err)
	}
	s.joins.forget(node)
	// Open watches of the machine that had the name are checked again
	// at once, and end.
	s.authEpoch.bump()
	return deleteMatching(ctx, s, func(i *v1.Instance) bool {
		return i.Spec.Node == node && !(i.Status.Finished() && i.Metadata.Deleting == nil)
	})
}

// issueIdentity signs a node's certificates for the key of csrPEM, and
// replaces the node's registry credential: what a renewal hands out.
func (s *Server) issueIdentity(ctx context.Context, node, csrPEM, src string) (*JoinResponse, error) {
	id, err := s.signIdentity(node, csrPEM, src)
	if err != nil {
		return nil, err
	}
	return s.handOut(ctx, node, id, true)
}

// renewalGrace is how long a node's registry credential keeps working
// after a renewal replaced it: the renewal's answer may not have reached
// the node (a timeout, identity.json not written for a full disk), which
// cannot renew again within the hour (renewEvery).
const renewalGrace = 2 * time.Hour

// nodeIdentity is a node's two certificates, signed and not yet handed
// out, and when the client certificate starts.
type nodeIdentity struct {
	client, server []byte
	since          time.Time
}

// signIdentity signs a node's certificates for the key of csrPEM; it
// writes nothing.
func (s *Server) signIdentity(node, csrPEM, src string) (nodeIdentity, error) {
	nodePEM, err := s.ca.SignNodeCSR([]byte(csrPEM), node)
	if err != nil {
		return nodeIdentity{}, err
	}
	blk, _ := pem.Decode([]byte(csrPEM))
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return nodeIdentity{}, fmt.Errorf("%w: %v", v1.ErrInvalid, err)
	}
	// The agent's listener is named for the node and for the address the
	// server saw it join (or renew) from: never for names the agent asks
	// for.
	var ips []net.IP
	if ip := net.ParseIP(src); ip != nil {
		ips = append(ips, ip)
	}
	servPEM, err := s.ca.SignServer(csr.PublicKey, []string{node}, ips)
	if err != nil {
		return nodeIdentity{}, err
	}
	leaf, err := pki.ParseCert(nodePEM)
	if err != nil {
		return nodeIdentity{}, fmt.Errorf("read the node certificate just signed: %w", err)
	}
	return nodeIdentity{client: nodePEM, server: servPEM, since: leaf.NotBefore}, nil
}

// handOut replaces the node's registry credential and answers with it
// and the node's certificates. After a join the old credentials go at
// once (they are another machine's); after a renewal they last
// renewalGrace more.
func (s *Server) handOut(ctx context.Context, node string, id nodeIdentity, renewal bool) (*JoinResponse, error) {
	// One registry credential per node, lasting as long as its
	// certificate: each join or renewal replaces the last one's.
	if err := s.retireRegistryTokens(ctx, node, renewal); err != nil {
		return nil, err
	}
	expires := time.Now().Add(pki.NodeValidity).UTC()
	_, regTok, err := auth.CreateToken(ctx, s.store, v1.TokenSpec{User: auth.NodeUser(node), Node: node, Expires: &expires,
		Description: "registry pulls of node " + node})
	if err != nil {
		return nil, err
	}
	return &JoinResponse{Certificate: string(id.client), ServerCertificate: string(id.server), CA: string(s.ca.CertPEM()),
		RegistryToken: regTok, Registry: s.registryHost}, nil
}

// retireRegistryTokens deletes the registry credentials of node, or, with
// grace, cuts their lives to renewalGrace from now (deleting those that
// have ended).
func (s *Server) retireRegistryTokens(ctx context.Context, node string, grace bool) error {
	if !grace {
		return deleteMatching(ctx, s, func(t *v1.Token) bool { return t.Spec.Node == node })
	}
	toks, _, err := store.List[*v1.Token](ctx, s.store, store.ListOptions{})
	if err != nil {
		return err
	}
	now := time.Now()
	cut := now.Add(renewalGrace).UTC()
	for _, t := range toks {
		if t.Spec.Node != node {
			continue
		}
		var err error
		switch {
		case t.Spec.Expires != nil && !t.Spec.Expires.After(now): // ended
			var old v1.Object
			if old, err = s.store.Delete(ctx, store.KindFor[*v1.Token](), "", t.Metadata.Name, 0); err == nil {
				s.afterDelete(old)
			}
		case t.Spec.Expires == nil || t.Spec.Expires.After(cut):
			var out *v1.Token
			if out, err = store.Mutate(ctx, s.store, "", t.Metadata.Name, func(t *v1.Token) error {
				t.Spec.Expires = &cut
				return nil
			}); err == nil {
				s.afterWrite(out)
			}
		}
		if err != nil && !errors.Is(err, v1.ErrNotFound) {
			return fmt.Errorf("retire the registry credential %s of node %s: %w", t.Metadata.Name, node, err)
		}
	}
	return nil
}

// RenewRequest is what an agent sends to renew its identity: a
// certificate request for a new key, under the node's name.
type RenewRequest struct {
	CSR string `json:"csr"`
}

// serveRenew gives an agent a new identity (the same answer as a join)
// before its certificate expires. The caller must present the node's
// current client certificate: a bearer token, even a node's registry
// credential, cannot renew, and an expired certificate fails the TLS
// handshake, so such a node joins again.
func (s *Server) serveRenew(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w}
	ri := &requestInfo{Kind: &v1.KindInfo{Kind: "Node", Plural: "nodes"}, Verb: "update", Sub: "renew"}
	reason := ""
	id := auth.Anonymous
	defer func() { s.finish(r, rec, ri, id, start, reason) }()
	node, ok := pki.NodeFromTLS(r.TLS)
	if !ok || r.Header.Get("Authorization") != "" {
		reason = "authentication failed"
		writeError(rec, fmt.Errorf("%w: renewing a node's identity takes that node's client certificate, and no bearer token", v1.ErrUnauthorized))
		return
	}
	id = &auth.Identity{User: auth.NodeUser(node), Node: node}
	ri.Name = node
	// A machine that lost the name to a later join must not renew its
	// way past that join.
	if err := s.currentNodeCert(r.Context(), node, r.TLS); err != nil {
		reason = "authentication failed"
		writeError(rec, err)
		return
	}
	if s.ca == nil {
		writeError(rec, fmt.Errorf("%w: this server has no CA (started without TLS)", v1.ErrUnavailable))
		return
	}
	var req RenewRequest
	if err := decodeBody(rec, r, 64<<10, &req); err != nil {
		writeError(rec, err)
		return
	}
	// Checked again, from the store and under the name's lock, now the
	// body is in: a join under the name may have come while it was
	// sent, and a certificate signed after it would hold the name again.
	unlock := s.identities.Lock(node)
	defer unlock()
	s.joins.forget(node)
	if err := s.currentNodeCert(r.Context(), node, r.TLS); err != nil {
		reason = "authentication failed"
		writeError(rec, err)
		return
	}
	if wait := s.renewals.take(node, time.Now()); wait > 0 {
		reason = "renewal rate limit"
		rec.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
		writeError(rec, fmt.Errorf("%w: node %s renewed its identity less than %s ago; try again in %s", v1.ErrTooManyRequest, node, renewEvery, wait.Round(time.Second)))
		return
	}
	resp, err := s.issueIdentity(r.Context(), node, req.CSR, sourceIP(r))
	if err != nil {
		s.renewals.undo(node)
		writeError(rec, err)
		return
	}
	writeJSON(rec, http.StatusOK, resp)
}

// renewEvery is how often a node may renew its identity. Its agent renews
// once in a certificate's last 30 days; a credential that renews more
// often is someone else's, and each renewal writes to the store.
const renewEvery = time.Hour

// renewalLimiter remembers each node's last renewal, in memory: a server
// restart forgets them, which lets one more renewal through.
type renewalLimiter struct {
	mu   sync.Mutex
	last map[string]time.Time
}

// take records a renewal of node at now, or returns how long it must wait.
func (l *renewalLimiter) take(node string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.last[node]; ok && now.Sub(t) < renewEvery {
		return renewEvery - now.Sub(t)
	}
	if l.last == nil {
		l.last = map[string]time.Time{}
	}
	for n, t := range l.last {
		if now.Sub(t) >= renewEvery {
			delete(l.last, n)
		}
	}
	l.last[node] = now
	return 0
}

// undo forgets a renewal that failed, so the agent's retry is not held
// back by it.
func (l *renewalLimiter) undo(node string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.last, node)
}
