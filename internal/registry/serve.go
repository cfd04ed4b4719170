package registry

import (
	"net/http"
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
	rt := parseRoute(req.URL.Path)
	w.Header().Set(apiVersionHeader, "registry/2.0")
	if rt.kind == routeToken {
		r.serveToken(w, req)
		return
	}
	if rt.repo != "" {
		if err := validateRepo(rt.repo); err != nil {
			writeError(w, http.StatusBadRequest, codeNameInvalid, err.Error(), map[string]string{"name": rt.repo})
			return
		}
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
		case http.MethodPut:
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
