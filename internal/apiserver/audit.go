package apiserver

import (
	"fmt"
	"net/http"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/audit"
	"github.com/gantry-dev/gantry/internal/auth"
)

// WithAuditLog records every request in the log and serves its query,
// export and verify endpoints.
func WithAuditLog(l *audit.Log) Option {
	return func(s *Server) { s.auditor, s.auditLog = l, l }
}

// AuditList is the body of GET /api/v1/audit.
type AuditList struct {
	Items []audit.Entry `json:"items"`
}

// serveAudit answers GET /api/v1/audit (query), /audit/export (JSON
// lines for a SIEM) and /audit/verify (recompute the hash chain). Only
// callers who may read "audit" (cluster admins by default) get them.
func (s *Server) serveAudit(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w}
	op := r.PathValue("op")
	ri := &requestInfo{Kind: &v1.KindInfo{Kind: "Audit", Plural: "audit"}, Verb: "list", Sub: op}
	id, err := s.authenticate(r)
	reason := ""
	defer func() { s.finish(r, rec, ri, orAnon(id), start, reason) }()
	if err != nil {
		reason = "authentication failed"
		writeError(rec, err)
		return
	}
	if op == "verify" {
		ri.Verb = "get"
	}
	if err := s.authz.Authorize(r.Context(), id, auth.Attributes{Verb: ri.Verb, Resource: "audit", Subresource: op}); err != nil {
		reason = "denied"
		writeError(rec, err)
		return
	}
	if s.auditLog == nil {
		writeError(rec, fmt.Errorf("%w: this server keeps no audit log", v1.ErrNotFound))
		return
	}
	ctx := r.Context()
	switch op {
	case "":
		f, err := audit.FilterFromQuery(r.URL.Query(), time.Now())
		if err != nil {
			writeError(rec, err)
			return
		}
		if f.Limit == 0 {
			f.Limit = 500
		}
		items, err := s.auditLog.Query(ctx, f)
		if err != nil {
			writeError(rec, err)
			return
		}
		if items == nil {
			items = []audit.Entry{}
		}
		writeJSON(rec, http.StatusOK, AuditList{Items: items})
	case "export":
		f, err := audit.FilterFromQuery(r.URL.Query(), time.Now())
		if err != nil {
			writeError(rec, err)
			return
		}
		rec.Header().Set("Content-Type", "application/x-ndjson")
		rec.WriteHeader(http.StatusOK)
		s.auditLog.Export(ctx, rec, f)
	case "verify":
		if err := s.auditLog.Flush(ctx); err != nil {
			writeError(rec, err)
			return
		}
		res, err := s.auditLog.Verify(ctx)
		if err != nil {
			writeError(rec, err)
			return
		}
		writeJSON(rec, http.StatusOK, res)
	default:
		writeError(rec, fmt.Errorf("%w: no audit operation %q (use /audit, /audit/export or /audit/verify)", v1.ErrNotFound, op))
	}
}

func orAnon(id *auth.Identity) *auth.Identity {
	if id == nil {
		return auth.Anonymous
	}
	return id
}
