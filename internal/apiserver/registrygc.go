package apiserver

import (
	"context"
	"fmt"
	"net/http"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/auth"
)

// WithRegistryGC serves POST /api/v1/registry/gc with fn.
func WithRegistryGC(fn func(ctx context.Context) (any, error)) Option {
	return func(s *Server) { s.registryGC = fn }
}

// serveRegistryGC runs a registry garbage collection (cluster admins:
// update on registry).
func (s *Server) serveRegistryGC(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w}
	ri := &requestInfo{Kind: &v1.KindInfo{Kind: "Registry", Plural: "registry"}, Verb: "update", Sub: "gc"}
	id, err := s.authenticate(r)
	reason := ""
	defer func() { s.finish(r, rec, ri, orAnon(id), start, reason) }()
	if err != nil {
		reason = "authentication failed"
		writeError(rec, err)
		return
	}
	if err := s.authz.Authorize(r.Context(), id, auth.Attributes{Verb: "update", Resource: "registry", Subresource: "gc"}); err != nil {
		reason = "denied"
		writeError(rec, err)
		return
	}
	if s.registryGC == nil {
		writeError(rec, fmt.Errorf("%w: this server runs no registry", v1.ErrNotFound))
		return
	}
	res, err := s.registryGC(r.Context())
	if err != nil {
		writeError(rec, err)
		return
	}
	writeJSON(rec, http.StatusOK, res)
}
