package registry

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

const (
	apiVersionHeader = "Docker-Distribution-API-Version"
	catalogScope     = "registry:catalog:*"
)

// ServeHTTP is the front end every request passes: it validates the
// repository name, authenticates and authorizes, answers what Gantry
// implements itself (token, catalog, referrers) and hands the rest to the
// engine, taking part in manifest writes (size limit, referrers index,
// events, delete protection) and in blob writes (the collector's lock).
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if r.cfg.OnRequest == nil {
		r.serve(w, req, nil)
		return
	}
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	var who Identity
	r.serve(sw, req, &who)
	rt := parseRoute(req.URL.Path)
	status := sw.status
	if status == 0 {
		status = http.StatusOK
	}
	action := actionOf(req)
	if rt.kind == routeToken {
		action = ActionToken
	}
	r.cfg.OnRequest(RequestRecord{Time: start, Identity: who, Method: req.Method, Path: req.URL.Path,
		Repository: rt.repo, Action: action, Status: status, Duration: time.Since(start), Source: req.RemoteAddr})
}

// RequestRecord describes a finished registry request, for the audit log.
type RequestRecord struct {
	Time       time.Time
	Identity   Identity // empty when the request was not authenticated
	Method     string
	Path       string
	Repository string
	Action     string // pull, push, delete, or token (a /v2/token exchange)
	Status     int
	Duration   time.Duration
	Source     string
}

func actionOf(req *http.Request) string {
	switch req.Method {
	case http.MethodGet, http.MethodHead:
		return "pull"
	case http.MethodDelete:
		return ActionDelete
	}
	return ActionPush
}

// statusWriter passes a response through and remembers its status, for
// OnRequest and for the front end's own steps after the engine answered.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// ReadFrom keeps the sendfile path of blob bodies.
func (s *statusWriter) ReadFrom(src io.Reader) (int64, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	if rf, ok := s.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(s.ResponseWriter, src)
}

func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (r *Registry) serve(w http.ResponseWriter, req *http.Request, who *Identity) {
	rt := parseRoute(req.URL.Path)
	w.Header().Set(apiVersionHeader, "registry/2.0")
	if rt.kind == routeToken {
		r.serveToken(w, req, who)
		return
	}
	if rt.repo != "" {
		if err := validateRepo(rt.repo); err != nil {
			writeError(w, http.StatusBadRequest, codeNameInvalid, err.Error(), map[string]string{"name": rt.repo})
			return
		}
	}
	if isForm(req) {
		// The engine reads mount, from and digest with FormValue, which
		// takes them from a form body too, while the permissions are
		// worked out from the query: a mount in a body would skip the
		// pull check on its source. No registry client sends forms.
		writeError(w, http.StatusBadRequest, codeUnsupported, "form bodies are not accepted: send mount, from and digest in the query string, and blob data as application/octet-stream", nil)
		return
	}
	if rt.kind == routeUploads && req.Method == http.MethodPost {
		if from := req.URL.Query().Get("from"); from != "" {
			if err := validateRepo(from); err != nil {
				writeError(w, http.StatusBadRequest, codeNameInvalid, err.Error(), map[string]string{"name": from})
				return
			}
		}
	}
	acc := needs(req, rt)
	c, fail := r.authenticate(req)
	if fail != nil {
		if fail.tooMany {
			w.Header().Set("Retry-After", "1") // the failure budget refills at several a second
			writeError(w, http.StatusTooManyRequests, codeTooManyRequests, fail.err.Error(), nil)
			return
		}
		if fail.unavailable {
			writeError(w, http.StatusServiceUnavailable, codeUnavailable, "cannot check credentials now, retry shortly", nil)
			return
		}
		scope := scopeString(acc)
		if rt.kind == routeCatalog {
			scope = catalogScope
		}
		r.challenge(w, req, scope, fail.tokenProblem, fail.err.Error())
		return
	}
	if rt.kind == routeCatalog && c.token != nil && !c.token.allows("registry", "catalog", "*") {
		r.challenge(w, req, catalogScope, "insufficient_scope", "the registry token does not carry the catalog scope")
		return
	}
	if who != nil {
		*who = c.id
	}
	if !r.authorize(w, req, c, acc) {
		return
	}

	switch rt.kind {
	case routeBase:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("{}"))
		return
	case routeCatalog:
		r.serveCatalog(w, req, c)
		return
	case routeReferrers:
		r.serveReferrers(w, req, rt)
		return
	case routeManifest:
		if !checkReference(w, rt.ref) {
			return
		}
		switch req.Method {
		case http.MethodPut:
			r.putManifest(w, req, rt, c)
			return
		case http.MethodDelete:
			r.deleteManifest(w, req, rt, c)
			return
		}
	case routeBlob:
		r.serveBlob(w, req, rt)
		return
	case routeUploads:
		if req.Method == http.MethodPost {
			r.startUpload(w, req, rt, c)
			return
		}
	case routeUpload:
		switch req.Method {
		case http.MethodPatch:
			// The engine answers these client mistakes with a 500.
			if ct := req.Header.Get("Content-Type"); ct != "" && ct != "application/octet-stream" {
				writeError(w, http.StatusUnsupportedMediaType, codeBlobUploadInvalid,
					fmt.Sprintf("a chunk is sent as application/octet-stream, not %q", ct), nil)
				return
			}
			if !r.checkChunkRange(w, req, rt) || !r.checkChunkQuota(w, req, rt) {
				return
			}
		case http.MethodPut:
			if !r.checkChunkRange(w, req, rt) {
				return
			}
			r.finishUpload(w, req, rt)
			return
		case http.MethodDelete:
			r.cancelUpload(w, req, rt)
			return
		}
	}
	r.toEngine(w, req)
}

// toEngine hands a request to the distribution engine, which sets the
// API version header itself.
func (r *Registry) toEngine(w http.ResponseWriter, req *http.Request) {
	w.Header().Del(apiVersionHeader)
	r.engine.ServeHTTP(w, req)
}

// isForm reports whether req carries an HTML form body, whose fields
// Request.FormValue would mix with the query's.
func isForm(req *http.Request) bool {
	if req.Method != http.MethodPost && req.Method != http.MethodPut && req.Method != http.MethodPatch {
		return false
	}
	ct, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type"))
	return ct == "application/x-www-form-urlencoded" || ct == "multipart/form-data"
}

// chunkRange is the Content-Range of a chunk (a PATCH, or the PUT that
// ends an upload): "START-END", bytes.
var chunkRange = regexp.MustCompile(`^[0-9]+-[0-9]+$`)

// checkChunkRange answers 416 for a chunk whose Content-Range is not
// START-END, runs backwards, or does not start where the upload ends, and
// returns false. The engine checks the range only when the request has a
// Content-Length: a chunk sent with Transfer-Encoding: chunked would be
// appended wherever the upload ends, whatever its range says, and a range
// it cannot parse (not START-END, past int64) is its 500.
func (r *Registry) checkChunkRange(w http.ResponseWriter, req *http.Request, rt route) bool {
	cr := req.Header.Get("Content-Range")
	if cr == "" {
		return true
	}
	var start, end int64
	var err error
	if !chunkRange.MatchString(cr) {
		err = errors.New("it is not START-END (as 0-1023)")
	} else {
		s, e, _ := strings.Cut(cr, "-")
		if start, err = strconv.ParseInt(s, 10, 64); err == nil {
			end, err = strconv.ParseInt(e, 10, 64)
		}
		if err == nil && start > end {
			err = errors.New("it ends before it starts")
		}
	}
	if err != nil {
		writeError(w, http.StatusRequestedRangeNotSatisfiable, codeBlobUploadInvalid,
			fmt.Sprintf("Content-Range %q: %v", cr, err), nil)
		return false
	}
	if size, ok := r.uploadSize(req.Context(), rt.repo, rt.ref); ok && start != size {
		writeError(w, http.StatusRequestedRangeNotSatisfiable, codeRangeInvalid,
			fmt.Sprintf("Content-Range %q does not start where the upload ends, at byte %d", cr, size),
			map[string]int64{"uploaded": size})
		return false
	}
	return true
}
