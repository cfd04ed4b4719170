package apiserver

import (
	"net/http"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/auth"
)

// guarded serves an endpoint outside the object routes (audit, registry
// gc, key rotation) with the same chain as every API request: it
// authenticates, authorizes verb on resource/sub, records the request in
// the audit log and metrics, and writes fn's error if it returns one.
func (s *Server) guarded(verb, resource, sub string, fn func(w http.ResponseWriter, r *http.Request) error) http.HandlerFunc {
	return s.audited(verb, resource, sub, true, fn)
}

// authenticated serves an endpoint that any caller may reach (whoami)
// with the chain of guarded but for the authorization: the caller's
// identity is in fn's context, and the request is recorded, so that a
// failed authentication there leaves a trace as anywhere else.
func (s *Server) authenticated(verb, resource string, fn func(w http.ResponseWriter, r *http.Request) error) http.HandlerFunc {
	return s.audited(verb, resource, "", false, fn)
}

func (s *Server) audited(verb, resource, sub string, authorize bool, fn func(w http.ResponseWriter, r *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		ri := &requestInfo{Kind: &v1.KindInfo{Kind: resource, Plural: resource}, Verb: verb, Sub: sub}
		id, err := s.authenticate(r)
		reason := ""
		defer func() {
			if v := recover(); v != nil {
				s.finish(r, rec, ri, orAnon(id), start, panicked(rec, v))
				panic(v) // withRecover answers it
			}
			s.finish(r, rec, ri, orAnon(id), start, reason)
		}()
		if err != nil {
			reason = "authentication failed"
			writeError(rec, err)
			return
		}
		if authorize {
			if err := s.authz.Authorize(r.Context(), id, auth.Attributes{Verb: verb, Resource: resource, Subresource: sub}); err != nil {
				reason = "denied"
				writeError(rec, err)
				return
			}
		}
		if err := fn(rec, r.WithContext(contextWith(r.Context(), id, ri))); err != nil {
			writeError(rec, err)
		}
	}
}

func orAnon(id *auth.Identity) *auth.Identity {
	if id == nil {
		return auth.Anonymous
	}
	return id
}
