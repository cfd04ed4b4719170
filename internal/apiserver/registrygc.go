package apiserver

import (
	"context"
	"fmt"
	"net/http"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// WithRegistryGC serves POST /api/v1/registry/gc with fn.
func WithRegistryGC(fn func(ctx context.Context) (any, error)) Option {
	return func(s *Server) { s.registryGC = fn }
}

// serveRegistryGC runs a registry garbage collection (cluster admins:
// update on registry/gc).
func (s *Server) serveRegistryGC(w http.ResponseWriter, r *http.Request) error {
	if s.registryGC == nil {
		return fmt.Errorf("%w: this server runs no registry", v1.ErrNotFound)
	}
	res, err := s.registryGC(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
