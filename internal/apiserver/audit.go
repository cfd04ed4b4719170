package apiserver

import (
	"fmt"
	"net/http"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/audit"
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

// The audit endpoints: GET /api/v1/audit (query), /audit/export (JSON
// lines for a SIEM) and /audit/verify (recompute the hash chain). They
// are routed through guarded, so only callers who may read "audit"
// (cluster admins by default) reach them.

func (s *Server) serveAuditQuery(w http.ResponseWriter, r *http.Request) error {
	log, err := s.auditLogOrErr()
	if err != nil {
		return err
	}
	f, err := audit.FilterFromQuery(r.URL.Query(), time.Now())
	if err != nil {
		return err
	}
	if f.Limit == 0 {
		f.Limit = 500
	}
	items, err := log.Query(r.Context(), f)
	if err != nil {
		return err
	}
	if items == nil {
		items = []audit.Entry{}
	}
	writeJSON(w, http.StatusOK, AuditList{Items: items})
	return nil
}

func (s *Server) serveAuditExport(w http.ResponseWriter, r *http.Request) error {
	log, err := s.auditLogOrErr()
	if err != nil {
		return err
	}
	f, err := audit.FilterFromQuery(r.URL.Query(), time.Now())
	if err != nil {
		return err
	}
	lw := &lazyOK{w: w, contentType: "application/x-ndjson"}
	if err := log.Export(r.Context(), lw, f); err != nil {
		if !lw.started {
			return err // nothing sent yet: a JSON error with its status
		}
		// Part of the trail is out: end the connection without the
		// clean end of a chunked body, so that the client sees the
		// trail cut short rather than complete.
		s.log.Warn("audit export cut short", "err", err)
		panic(http.ErrAbortHandler)
	}
	if !lw.started {
		lw.start() // an empty trail is still a 200
	}
	return nil
}

// lazyOK sends 200 and the content type with the first bytes written,
// so that an error before them can still be answered as an error.
type lazyOK struct {
	w           http.ResponseWriter
	contentType string
	started     bool
}

func (l *lazyOK) start() {
	l.started = true
	l.w.Header().Set("Content-Type", l.contentType)
	l.w.WriteHeader(http.StatusOK)
}

func (l *lazyOK) Write(b []byte) (int, error) {
	if !l.started {
		l.start()
	}
	return l.w.Write(b)
}

func (s *Server) serveAuditVerify(w http.ResponseWriter, r *http.Request) error {
	log, err := s.auditLogOrErr()
	if err != nil {
		return err
	}
	if err := log.Flush(r.Context()); err != nil {
		return err
	}
	res, err := log.Verify(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *Server) auditLogOrErr() (*audit.Log, error) {
	if s.auditLog == nil {
		return nil, fmt.Errorf("%w: this server keeps no audit log", v1.ErrNotFound)
	}
	return s.auditLog, nil
}
