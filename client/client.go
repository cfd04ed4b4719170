// Package client is the Go client of Gantry's API, used by the CLI, the
// node agent and the tests. It speaks the REST+JSON API of api/v1 and maps
// error responses back onto the v1 error kinds, so that
// errors.Is(err, v1.ErrConflict) works the same on both sides of the wire.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/pki"
)

// Config says how to reach the server.
type Config struct {
	// Server is the API's base URL, e.g. https://127.0.0.1:7443.
	Server string
	// Token is the bearer token.
	Token string
	// CA is the PEM of the cluster CA that signed the server's
	// certificate; empty trusts the system roots.
	CA []byte
	// Certificates are client certificates (node identity).
	Certificates []tls.Certificate
	// GetClientCertificate, if set, is asked for the client certificate
	// at each TLS handshake instead of Certificates, so that a renewed
	// node certificate is used from the next connection on.
	GetClientCertificate func(*tls.CertificateRequestInfo) (*tls.Certificate, error)
	// Timeout bounds non-streaming requests (default 30s).
	Timeout time.Duration
	// HealthCheck is how long an HTTP/2 connection may go without a
	// frame from the server before it is pinged, and how long the ping
	// may take before the connection is dropped (default 15s). Requests
	// share one connection: one that the network dropped silently (a
	// firewall that lost its state) would otherwise hold every request,
	// heartbeats included, until TCP gives up after some 15 minutes.
	HealthCheck time.Duration
	// UserAgent names the caller.
	UserAgent string
	// Warnings, if set, hears each warning the server sends with an
	// answer (a Warning field, as Kubernetes sends them), such as a
	// field an apply kept from the stored object.
	Warnings func(text string)
}

// Client talks to one Gantry API server. It is safe for concurrent use.
type Client struct {
	base    *url.URL
	token   string
	hc      *http.Client // bounded requests
	stream  *http.Client // watches, logs: no overall timeout
	ua      string
	timeout time.Duration
	warn    func(string)
}

// New returns a client for cfg.
func New(cfg Config) (*Client, error) {
	if cfg.Server == "" {
		return nil, errors.New("no server address: pass --server, set GANTRY_SERVER, or run `gantry up` to write ~/.gantry/config")
	}
	u, err := url.Parse(strings.TrimRight(cfg.Server, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server address %q must look like https://host:port", cfg.Server)
	}
	// The cluster CA also signs agents' listeners: none of them may pass
	// for the API server.
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: cfg.Certificates, GetClientCertificate: cfg.GetClientCertificate,
		VerifyConnection: pki.RefuseNodeListeners}
	if len(cfg.CA) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(cfg.CA) {
			return nil, errors.New("the CA in the client config is not valid PEM")
		}
		tlsCfg.RootCAs = pool
	}
	if cfg.HealthCheck == 0 {
		cfg.HealthCheck = 15 * time.Second
	}
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tlsCfg,
		MaxIdleConns:        100,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
		HTTP2:               &http.HTTP2Config{SendPingTimeout: cfg.HealthCheck, PingTimeout: cfg.HealthCheck},
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	ua := cfg.UserAgent
	if ua == "" {
		ua = "gantry-client"
	}
	return &Client{
		base: u, token: cfg.Token, ua: ua, timeout: cfg.Timeout, warn: cfg.Warnings,
		hc:     &http.Client{Transport: tr, Timeout: cfg.Timeout, CheckRedirect: refuseRedirect},
		stream: &http.Client{Transport: tr, CheckRedirect: refuseRedirect},
	}, nil
}

// refuseRedirect stops the client at a redirect: the API never redirects
// on purpose, and following one is dangerous. Go's ServeMux answers a
// path with a "." or ".." segment with a 307 to the cleaned path, and a
// 307 keeps the method, so DELETE .../namespaces/team/apps/.. once
// deleted namespace team. send turns the 3xx into an error.
func refuseRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// CheckName refuses a namespace or object name that cannot stand as one
// segment of an API path: "", "." and ".." (which an HTTP server resolves
// against the path around them, so that apps/.. means the namespace) and
// anything else that is no valid name, by the rule the server applies to
// paths. Event names are dotted (object.time.random), so for them only
// what would change the path is refused. what says which ("name",
// "namespace") in the error.
func CheckName(k *v1.KindInfo, what, name string) error {
	if k.Kind == "Event" && what == "name" {
		if name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
			return fmt.Errorf("%w: %q is not a valid event name", v1.ErrInvalid, name)
		}
		return nil
	}
	if msg := v1.ValidateName(name, 253); msg != "" {
		return fmt.Errorf("%w: %q is not a valid %s: it %s", v1.ErrInvalid, name, what, msg)
	}
	return nil
}

// ObjectPath is Path for one object, with its namespace (for namespaced
// kinds, when given) and name checked by CheckName first: a name such as
// ".." would otherwise make the path name another object.
func ObjectPath(k *v1.KindInfo, ns, name string) (string, error) {
	if k.Namespaced && ns != "" {
		if err := CheckName(k, "namespace", ns); err != nil {
			return "", err
		}
	}
	if err := CheckName(k, "name", name); err != nil {
		return "", err
	}
	return Path(k, ns, name), nil
}

// collectionPath is Path for a kind's collection in ns (every namespace
// when empty), with ns checked.
func collectionPath(k *v1.KindInfo, ns string) (string, error) {
	if k.Namespaced && ns != "" {
		if err := CheckName(k, "namespace", ns); err != nil {
			return "", err
		}
	}
	return Path(k, ns, ""), nil
}

// Server returns the base URL.
func (c *Client) Server() string { return c.base.String() }

// Path returns the API path of a kind's collection or object, with each
// segment escaped. ns is ignored for cluster-scoped kinds; an empty ns
// lists across namespaces. It checks nothing: use ObjectPath for names
// that come from a user.
func Path(k *v1.KindInfo, ns, name string) string {
	p := "/api/v1/"
	if k.Namespaced && ns != "" {
		p += "namespaces/" + url.PathEscape(ns) + "/"
	}
	p += k.Plural
	if name != "" {
		p += "/" + url.PathEscape(name)
	}
	return p
}

// warningText takes the text out of a Warning field (`299 - "text"`).
func warningText(field string) string {
	rest, ok := strings.CutPrefix(field, "299 - ")
	if !ok {
		return field
	}
	if t, err := strconv.Unquote(rest); err == nil {
		return t
	}
	return rest
}

// Do sends a request and decodes a JSON response into out (when non-nil).
// path is escaped, as Path gives it. Error responses become
// *v1.StatusError. The request is bounded by Config.Timeout.
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, body, out any) (http.Header, error) {
	return c.do(ctx, c.hc, method, path, query, body, out)
}

// DoLong is Do without the overall timeout, for operations that may run
// on the server for longer (registry garbage collection, resealing every
// secret): hanging up would cancel them half-way. Only ctx ends it.
func (c *Client) DoLong(ctx context.Context, method, path string, query url.Values, body, out any) (http.Header, error) {
	return c.do(ctx, c.stream, method, path, query, body, out)
}

func (c *Client) do(ctx context.Context, hc *http.Client, method, path string, query url.Values, body, out any) (http.Header, error) {
	resp, err := c.send(ctx, hc, method, path, query, body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if c.warn != nil {
		for _, w := range resp.Header.Values("Warning") {
			c.warn(warningText(w))
		}
	}
	if out != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp.Header, fmt.Errorf("decode response of %s %s: %w", method, path, err)
		}
	} else {
		io.Copy(io.Discard, resp.Body)
	}
	return resp.Header, nil
}

// url returns the URL of an escaped API path. path is escaped already
// (Path escapes each segment), so it becomes RawPath as it is and Path
// unescaped: assigning it to Path alone would escape it a second time,
// and the server would see "h%C3%A9llo" for héllo.
func (c *Client) url(path string, query url.Values) (*url.URL, error) {
	u := *c.base
	raw := strings.TrimRight(u.EscapedPath(), "/") + path
	p, err := url.PathUnescape(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: path %q: %v", v1.ErrInvalid, path, err)
	}
	// Whatever built the path, a dot segment must not reach the server:
	// it resolves against its neighbours (see refuseRedirect).
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return nil, fmt.Errorf("%w: path %q has a %q segment", v1.ErrInvalid, path, seg)
		}
	}
	u.Path, u.RawPath = p, raw
	u.RawQuery = query.Encode()
	return &u, nil
}

// send performs a request and returns the response if its status is 2xx.
func (c *Client) send(ctx context.Context, hc *http.Client, method, path string, query url.Values, body any) (*http.Response, error) {
	u, err := c.url(path, query)
	if err != nil {
		return nil, err
	}
	var rd io.Reader
	if body != nil {
		if r, ok := body.(io.Reader); ok {
			rd = r
		} else {
			b, err := json.Marshal(body)
			if err != nil {
				return nil, err
			}
			rd = bytes.NewReader(b)
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.ua)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if msg := certificateTrouble(err); msg != "" {
			// Not a server that is away: trying again will not help.
			return nil, fmt.Errorf("%s %s: %v: %s", method, c.base.Host, err, msg)
		}
		return nil, fmt.Errorf("%w: %s %s: %v", v1.ErrUnavailable, method, c.base.Host, err)
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		resp.Body.Close()
		return nil, fmt.Errorf("%s %s: the server answered %s (to %q), but the Gantry API never redirects: check that --server is the API's address",
			method, u.Redacted(), resp.Status, resp.Header.Get("Location"))
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp, nil
}

func decodeError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var st v1.Status
	if json.Unmarshal(b, &st) != nil || st.Message == "" {
		st = v1.Status{Code: resp.StatusCode, Message: strings.TrimSpace(string(b))}
		if st.Message == "" {
			st.Message = resp.Status
		}
		if resp.StatusCode == http.StatusNotFound && resp.Request != nil && resp.Request.URL != nil {
			// Not the API's own answer (it always says what is not
			// found): most likely not a Gantry API server at all.
			u := resp.Request.URL
			st.Message = fmt.Sprintf("%s://%s answered %q for %s, not as a Gantry API server does: check --server (the registry and the load balancer listen on other ports)", u.Scheme, u.Host, st.Message, u.Path)
		}
	}
	if st.Code == 0 {
		st.Code = resp.StatusCode
	}
	if st.Reason == "" && st.Code == http.StatusConflict && resp.Request != nil && resp.Request.Method != http.MethodPost {
		// No reason (a proxy's body, or a cut one): a 409 to a write of
		// an existing object is a conflict of revisions, which a caller
		// may retry; a create's is "already exists".
		st.Reason = "Conflict"
	}
	return &v1.StatusError{Status: st}
}

func decodeObject(kind string, b []byte) (v1.Object, error) {
	o, err := v1.NewObject(kind)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, o); err != nil {
		return nil, fmt.Errorf("decode %s: %w", kind, err)
	}
	return o, nil
}

func kindOf(o v1.Object) (*v1.KindInfo, error) {
	return v1.KindOf(o)
}

// Get reads one object.
func (c *Client) Get(ctx context.Context, kind, ns, name string) (v1.Object, error) {
	k, ok := v1.LookupKind(kind)
	if !ok {
		return nil, fmt.Errorf("%w: unknown kind %q", v1.ErrInvalid, kind)
	}
	p, err := ObjectPath(k, ns, name)
	if err != nil {
		return nil, err
	}
	var raw json.RawMessage
	if _, err := c.Do(ctx, http.MethodGet, p, nil, nil, &raw); err != nil {
		return nil, err
	}
	return decodeObject(k.Kind, raw)
}

// ListOptions narrow a List or Watch.
type ListOptions struct {
	Selector string
}

type listBody struct {
	Kind     string            `json:"kind"`
	Revision int64             `json:"revision"`
	Items    []json.RawMessage `json:"items"`
}

// List reads every object of a kind in ns (every namespace when ns is
// empty) and the revision of the list.
func (c *Client) List(ctx context.Context, kind, ns string, opts ListOptions) ([]v1.Object, int64, error) {
	k, ok := v1.LookupKind(kind)
	if !ok {
		return nil, 0, fmt.Errorf("%w: unknown kind %q", v1.ErrInvalid, kind)
	}
	q := url.Values{}
	if opts.Selector != "" {
		q.Set("labelSelector", opts.Selector)
	}
	p, err := collectionPath(k, ns)
	if err != nil {
		return nil, 0, err
	}
	var lb listBody
	if _, err := c.Do(ctx, http.MethodGet, p, q, nil, &lb); err != nil {
		return nil, 0, err
	}
	out := make([]v1.Object, 0, len(lb.Items))
	for _, raw := range lb.Items {
		o, err := decodeObject(k.Kind, raw)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, o)
	}
	return out, lb.Revision, nil
}

// write sends o and decodes the stored object back into it.
func (c *Client) write(ctx context.Context, method string, o v1.Object, query url.Values) (string, error) {
	k, err := kindOf(o)
	if err != nil {
		return "", err
	}
	m := o.GetMeta()
	var p string
	if method == http.MethodPost {
		p, err = collectionPath(k, m.Namespace)
	} else {
		p, err = ObjectPath(k, m.Namespace, m.Name)
	}
	if err != nil {
		return "", err
	}
	h, err := c.Do(ctx, method, p, query, o, o)
	if err != nil {
		return "", err
	}
	return h.Get("X-Gantry-Result"), nil
}

// Create stores a new object; o is updated with the stored version.
func (c *Client) Create(ctx context.Context, o v1.Object) error {
	_, err := c.write(ctx, http.MethodPost, o, nil)
	return err
}

// Update writes o if it is unchanged since it was read (its
// metadata.revision); otherwise it fails with v1.ErrConflict.
func (c *Client) Update(ctx context.Context, o v1.Object) error {
	_, err := c.write(ctx, http.MethodPut, o, nil)
	return err
}

// Apply creates or updates o to match and says which happened:
// "created", "configured" or "unchanged".
func (c *Client) Apply(ctx context.Context, o v1.Object) (string, error) {
	return c.write(ctx, http.MethodPut, o, url.Values{"apply": {"true"}})
}

// ApplyDryRun runs an apply through every check the server makes
// (validation, policy, quota, route ownership) without storing anything,
// and says what the apply would do; o becomes the object as it would be
// stored.
func (c *Client) ApplyDryRun(ctx context.Context, o v1.Object) (string, error) {
	r, err := c.ApplyDryRunResult(ctx, o)
	return r.Result, err
}

// DryRunResult is the answer of a dry-run apply.
type DryRunResult struct {
	// Result is "created", "configured" or "unchanged".
	Result string
	// SecretValuesNotCompared says that the server did not compare a
	// Secret's values with the stored ones, because the caller may not
	// read them: Result "configured" then does not tell whether they
	// change.
	SecretValuesNotCompared bool
}

// ApplyDryRunResult is ApplyDryRun, with what else the answer says.
func (c *Client) ApplyDryRunResult(ctx context.Context, o v1.Object) (DryRunResult, error) {
	k, err := kindOf(o)
	if err != nil {
		return DryRunResult{}, err
	}
	// Decoded into a fresh object, not over o: what the answer leaves out
	// (a secret's values) must not survive from the request.
	out := reflect.New(reflect.TypeOf(o).Elem())
	m := o.GetMeta()
	p, err := ObjectPath(k, m.Namespace, m.Name)
	if err != nil {
		return DryRunResult{}, err
	}
	h, err := c.Do(ctx, http.MethodPut, p, url.Values{"apply": {"true"}, "dryRun": {"true"}}, o, out.Interface())
	if err != nil {
		return DryRunResult{}, err
	}
	reflect.ValueOf(o).Elem().Set(out.Elem())
	return DryRunResult{Result: h.Get("X-Gantry-Result"), SecretValuesNotCompared: h.Get("X-Gantry-Secret-Values") == "not-compared"}, nil
}

// Delete removes an object and returns it as it was (or as marked for
// deletion, for instances that drain first).
func (c *Client) Delete(ctx context.Context, kind, ns, name string) (v1.Object, error) {
	k, ok := v1.LookupKind(kind)
	if !ok {
		return nil, fmt.Errorf("%w: unknown kind %q", v1.ErrInvalid, kind)
	}
	p, err := ObjectPath(k, ns, name)
	if err != nil {
		return nil, err
	}
	var raw json.RawMessage
	if _, err := c.Do(ctx, http.MethodDelete, p, nil, nil, &raw); err != nil {
		return nil, err
	}
	return decodeObject(k.Kind, raw)
}

// Sub calls a subresource (scale, rollback, status, …) and decodes the
// answer into out.
func (c *Client) Sub(ctx context.Context, method, kind, ns, name, sub string, body, out any) error {
	k, ok := v1.LookupKind(kind)
	if !ok {
		return fmt.Errorf("%w: unknown kind %q", v1.ErrInvalid, kind)
	}
	p, err := ObjectPath(k, ns, name)
	if err != nil {
		return err
	}
	_, err = c.Do(ctx, method, p+"/"+url.PathEscape(sub), nil, body, out)
	return err
}

// Stream opens a streaming GET (logs) and returns the body.
func (c *Client) Stream(ctx context.Context, path string, query url.Values) (io.ReadCloser, error) {
	resp, err := c.send(ctx, c.stream, http.MethodGet, path, query, nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// certificateTrouble says what to do about a TLS failure that no retry
// mends: the server's certificate is not one the client trusts, or the
// server refused the client's (a node's that expired, or of another
// cluster). It is empty for other errors.
func certificateTrouble(err error) string {
	var unknownCA x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var host x509.HostnameError
	var verify *tls.CertificateVerificationError
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &verify) && errors.As(verify.Err, &unknownCA):
		return "the server's certificate is not signed by the CA this client trusts (the server was set up again, or this is another server): log in again with its CA, or join the node again"
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		// Expired, or not yet valid, by this machine's clock, which
		// may be wrong for a while (a board that boots before its
		// clock is set): retried, as a server that is away.
		return ""
	case errors.As(err, &invalid), errors.As(err, &host):
		return "the server's certificate does not fit this address"
	}
	// An alert from the server comes as a net.OpError "remote error"
	// whose error (crypto/tls's unexported alert) has only its text.
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" && op.Err != nil {
		switch strings.TrimPrefix(op.Err.Error(), "tls: ") {
		case "bad certificate", "unsupported certificate", "revoked certificate", "expired certificate",
			"unknown certificate", "unknown certificate authority", "certificate required":
			return "the server refused this client's certificate (expired, or of another cluster): join the node again"
		}
	}
	return ""
}
