package apiserver

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// Nodes reaches agents: in-process ones (`gantry up`) directly through
// their handler, remote ones through a reverse proxy to their AgentURL.
type Nodes struct {
	mu        sync.RWMutex
	local     map[string]http.Handler
	Transport http.RoundTripper
}

// NewNodes returns an empty node proxy.
func NewNodes() *Nodes { return &Nodes{local: map[string]http.Handler{}} }

// AddLocal serves a node from an in-process agent handler.
func (n *Nodes) AddLocal(node string, h http.Handler) {
	n.mu.Lock()
	n.local[node] = h
	n.mu.Unlock()
}

// ServeNode forwards r to node's agent at path.
func (n *Nodes) ServeNode(w http.ResponseWriter, r *http.Request, node *v1.Node, path string, query url.Values) {
	r2 := r.Clone(r.Context())
	r2.URL.Path, r2.URL.RawPath, r2.URL.RawQuery = path, "", query.Encode()
	r2.RequestURI = ""
	n.mu.RLock()
	h := n.local[node.Metadata.Name]
	n.mu.RUnlock()
	if h != nil {
		h.ServeHTTP(w, r2)
		return
	}
	if node.Status.AgentURL == "" {
		writeError(w, fmt.Errorf("%w: node %s has no agent address", v1.ErrUnavailable, node.Metadata.Name))
		return
	}
	target, err := url.Parse(node.Status.AgentURL)
	if err != nil {
		writeError(w, fmt.Errorf("%w: node %s agent address: %v", v1.ErrUnavailable, node.Metadata.Name, err))
		return
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.URL.Path, pr.Out.URL.RawQuery = path, query.Encode()
			pr.Out.Header.Del("Authorization")
		},
		Transport:     n.Transport,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			writeError(w, fmt.Errorf("%w: node %s: %v", v1.ErrUnavailable, node.Metadata.Name, err))
		},
	}
	rp.ServeHTTP(w, r2)
}

// Hijack lets an agent upgrade the connection (exec) through the
// recorder.
func (s *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := s.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("connection cannot be hijacked")
	}
	if s.status == 0 {
		s.status = http.StatusSwitchingProtocols
	}
	return hj.Hijack()
}
