package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strings"

	"github.com/distribution/distribution/v3"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// Blob requests go to the engine with three additions:
//
//   - Requests that complete a blob in a repository or promise one to a
//     client (HEAD, finishing an upload, a mount) run under the
//     collector's shared lock and record the blob, under the digest the
//     client used and under the canonical one the engine answers with, in
//     the touch set (see gc.go).
//   - Digests other than sha256: the engine stores blobs under their
//     sha256 and links the other digest to it, but answers with the
//     sha256 in Docker-Content-Digest and Location, and forgets the link
//     when mounting. The front end puts the client's digest back and
//     makes the link.
//   - Uploads in one POST (?digest= with the body) and mounts without
//     ?from=, both OCI 1.1 features the engine lacks, are built from the
//     engine's own upload and mount.

func (r *Registry) serveBlob(w http.ResponseWriter, req *http.Request, rt route) {
	d, err := digest.Parse(rt.ref)
	if err != nil {
		// The engine's router matches no digest it cannot parse, and
		// answers a plain-text 404 page.
		writeError(w, http.StatusBadRequest, codeDigestInvalid, fmt.Sprintf("%q is not a digest: %v (write ALGORITHM:HEX, such as sha256:…)", rt.ref, err), nil)
		return
	}
	if req.Method == http.MethodDelete {
		r.deleteBlob(w, req, rt, d)
		return
	}
	if req.Method != http.MethodHead {
		if d.Algorithm() != digest.Canonical {
			w = r.blobHook(w, d, false)
		}
		if req.Header.Get("Range") != "" {
			w = &rangeErrorWriter{ResponseWriter: w}
		}
		r.toEngine(w, req)
		return
	}
	// A client that finds a blob here skips uploading it and will
	// reference it from its manifest: protect it from the collector. The
	// hook records it once the engine has found it, still under the
	// lock and before the client hears: a HEAD of a digest the registry
	// lacks promises nothing, and recording those would let any reader
	// grow the touch set with made-up digests.
	r.writeMu.RLock()
	defer r.writeMu.RUnlock()
	r.toEngine(r.blobHook(w, d, true), req)
}

// deleteBlob handles DELETE /v2/<name>/blobs/<digest>, which unlinks a
// blob from the repository. It is refused while a manifest of the
// repository references the blob: the image would lose the blob for its
// pulls, and the collector, marking from that manifest, would keep the
// data on disk where the quota, which counts linked blobs, no longer
// sees it (a namespace could store past its quota by pushing, unlinking
// and pushing again). It runs under the namespace's lock, which a
// manifest PUT holds while it commits, in every namespace, quota or not,
// so that no manifest referencing the blob lands between the check and
// the unlink.
func (r *Registry) deleteBlob(w http.ResponseWriter, req *http.Request, rt route, d digest.Digest) {
	unlock := r.lockNamespace(rt.namespace())
	defer unlock()
	m, err := r.manifestReferencing(req.Context(), rt.repo, d)
	if err != nil {
		r.log.Error("registry: find the manifests that reference a blob", "repo", rt.repo, "digest", d, "err", err)
		writeError(w, http.StatusInternalServerError, "UNKNOWN", "cannot check which manifests reference "+d.String(), nil)
		return
	}
	if m != "" {
		writeError(w, http.StatusConflict, codeDenied,
			fmt.Sprintf("blob %s is referenced by manifest %s of %s: delete the manifest (gantry image rm %s@%s), and gantry registry gc frees the blob if nothing else uses it",
				d, m, rt.repo, rt.repo, m),
			map[string]string{"repository": rt.repo, "digest": d.String(), "manifest": m.String()})
		return
	}
	if r.blobDeleteChecked != nil {
		r.blobDeleteChecked()
	}
	if d.Algorithm() != digest.Canonical {
		w = r.blobHook(w, d, false)
	}
	r.toEngine(w, req)
}

// manifestReferencing returns a manifest of repo that references blob d,
// directly or under another digest the repository links to the same
// data, or "" if none does (or repo does not link d).
func (r *Registry) manifestReferencing(ctx context.Context, repo string, d digest.Digest) (digest.Digest, error) {
	target, ok := r.readLink(ctx, layerLinkPath(repo, d))
	if !ok {
		return "", nil // nothing to unlink: the engine answers 404
	}
	rp, err := r.repository(ctx, repo)
	if err != nil {
		return "", err
	}
	var found digest.Digest
	err = eachManifest(ctx, rp, repo, func(md digest.Digest, man distribution.Manifest) error {
		for _, ref := range man.References() {
			same := ref.Digest == d || ref.Digest == target
			if !same && ref.Digest.Algorithm() != digest.Canonical && ref.Digest.Validate() == nil {
				t, ok := r.readLink(ctx, layerLinkPath(repo, ref.Digest))
				same = ok && t == target
			}
			if same {
				found = md
				return errStopManifests
			}
		}
		return nil
	})
	return found, err
}

// startUpload handles POST /v2/<name>/blobs/uploads/: a mount, an upload
// in one request, or the start of an upload.
func (r *Registry) startUpload(w http.ResponseWriter, req *http.Request, rt route, c *caller) {
	q := req.URL.Query()
	if m := q.Get("mount"); m != "" {
		d, err := digest.Parse(m)
		if err != nil {
			r.toEngine(w, req)
			return
		}
		// Blobs are recorded for gc only once the engine has them (here,
		// in mountHook and blobHook), under writeMu like the write: a
		// made-up digest recorded up front fills the touch set, and past
		// its limit every blob counts as touched and gc frees nothing.
		r.writeMu.RLock()
		defer r.writeMu.RUnlock()
		from := q.Get("from")
		if from == "" {
			if from = r.mountSource(req.Context(), c, rt.repo, d); from != "" {
				q.Set("from", from)
				req = req.Clone(req.Context())
				req.URL.RawQuery = q.Encode()
				req.RequestURI = req.URL.RequestURI()
			}
		}
		var canonical digest.Digest
		if from != "" && d.Algorithm() != digest.Canonical {
			// The engine links a mounted blob under the digest the
			// client named, pointing at itself; for a non-canonical
			// digest the link must point at the canonical blob, which
			// the source repository's link names.
			if b, err := r.driver.GetContent(req.Context(), layerLinkPath(from, d)); err == nil {
				canonical, _ = digest.Parse(string(b))
			}
		}
		if from != "" {
			// A mount adds the blob to this namespace's storage.
			blob := d
			if canonical != "" {
				blob = canonical
			}
			var size int64
			if st, err := r.driver.Stat(req.Context(), blobDataPath(blob)); err == nil {
				size = st.Size()
			}
			release, ok := r.holdOrRefuse(req.Context(), w, rt.repo, blob, size, true)
			if !ok {
				return
			}
			defer release()
		}
		r.toEngine(r.mountHook(w, rt.repo, d, canonical), req)
		return
	}
	if s := q.Get("digest"); s != "" {
		d, err := digest.Parse(s)
		if err != nil {
			writeError(w, http.StatusBadRequest, codeDigestInvalid, "digest "+s+" is invalid", nil)
			return
		}
		r.writeMu.RLock()
		defer r.writeMu.RUnlock()
		r.uploadInOne(w, req, rt, d)
		return
	}
	r.toEngine(w, req)
}

// finishUpload handles PUT /v2/<name>/blobs/uploads/<id>?digest=, which
// completes an upload.
func (r *Registry) finishUpload(w http.ResponseWriter, req *http.Request, rt route) {
	r.writeMu.RLock()
	defer r.writeMu.RUnlock()
	d, err := digest.Parse(req.URL.Query().Get("digest"))
	if err != nil {
		r.toEngine(w, req)
		return
	}
	size := int64(-1)
	if req.ContentLength >= 0 {
		size = r.uploadedSize(req.Context(), rt.repo, rt.ref) + req.ContentLength
	}
	release, err := r.holdStorage(req.Context(), rt.repo, d, size, req.ContentLength == 0)
	if err != nil {
		r.refuseUpload(req.Context(), w, rt, err)
		return
	}
	if release != nil {
		defer release()
	}
	r.completeUpload(w, req, rt.repo, rt.ref, d)
}

// checkChunkQuota refuses, before its data streams in, a chunk (a PATCH)
// that would make its upload larger than the whole storage quota of its
// namespace: what the upload holds so far and the chunk's Content-Length,
// when it has one. Such a blob can never be committed (a blob the
// namespace already holds, which would count nothing, is not larger than
// the quota), so its data would only fill the disk. The room left is not
// what bounds a chunk: a chunk does not say which blob it is part of, and
// one of a blob the namespace already holds must go through. It reports
// whether the chunk may go on; where no quota applies it always may.
func (r *Registry) checkChunkQuota(w http.ResponseWriter, req *http.Request, rt route) bool {
	ns := rt.namespace()
	limit, err := r.storageLimit(req.Context(), ns)
	if err != nil {
		writeQuotaError(w, err)
		return false
	}
	if limit <= 0 {
		return true
	}
	size := r.uploadedSize(req.Context(), rt.repo, rt.ref) + max(req.ContentLength, 0)
	if size <= limit {
		return true
	}
	used, _, err := r.storageUsage(req.Context(), ns, "")
	if err != nil {
		writeQuotaError(w, fmt.Errorf("%w: count the registry storage of namespace %q: %v", v1.ErrUnavailable, ns, err))
		return false
	}
	r.refuseUpload(req.Context(), w, rt, &errQuota{ns: ns, used: used, request: size, limit: limit})
	return false
}

// refuseUpload answers a refusal by holdStorage of a request that
// continues or completes upload rt.ref. A refusal by the quota also
// removes the upload and its data at once: the client has to start over
// anyway, and the data, which the quota does not count, would otherwise
// stay on disk until the purger takes it a day later.
func (r *Registry) refuseUpload(ctx context.Context, w http.ResponseWriter, rt route, err error) {
	var q *errQuota
	if errors.As(err, &q) {
		r.dropUpload(ctx, rt.repo, rt.ref)
	}
	writeQuotaError(w, err)
}

// completeUpload passes the PUT that completes upload id to the engine.
// When the engine refuses the content (a wrong digest, a wrong length)
// it means to cancel the upload, but its writer is closed by then and the
// cancel fails, leaving the session and its data behind; the front end
// removes them, so that a failed upload leaves nothing. Other refusals (a
// chunk out of order, 416) leave the session for the client to go on.
func (r *Registry) completeUpload(w http.ResponseWriter, req *http.Request, repo, id string, d digest.Digest) {
	hw := r.blobHook(w, d, true)
	r.toEngine(hw, req)
	if hw.status == http.StatusBadRequest && (hw.errorCode() == codeDigestInvalid || hw.errorCode() == "BLOB_UPLOAD_INVALID") {
		r.dropUpload(req.Context(), repo, id)
	}
}

// cancelUpload handles DELETE /v2/<name>/blobs/uploads/<id>. The engine
// removes the upload and then, closing its writer, writes the hash state
// back into the directory it removed; the front end removes it again.
func (r *Registry) cancelUpload(w http.ResponseWriter, req *http.Request, rt route) {
	sw := &statusWriter{ResponseWriter: w}
	r.toEngine(sw, req)
	if sw.status == http.StatusNoContent {
		r.dropUpload(req.Context(), rt.repo, rt.ref)
	}
}

// uploadID is the shape of the engine's upload identifiers (UUIDs). Only
// such names are ever removed, so that no request can point the removal
// elsewhere.
var uploadID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func (r *Registry) dropUpload(ctx context.Context, repo, id string) {
	if !uploadID.MatchString(id) {
		return
	}
	err := r.driver.Delete(ctx, path.Join(storageRoot, "repositories", repo, "_uploads", id))
	var nf storagedriver.PathNotFoundError
	if err != nil && !errors.As(err, &nf) {
		r.log.Warn("registry: remove failed upload", "repo", repo, "upload", id, "err", err)
	}
}

// uploadInOne stores a blob sent whole in the POST that would otherwise
// start an upload: it starts one in the engine and completes it with the
// request's body, which is what a client that gets 202 does next anyway.
func (r *Registry) uploadInOne(w http.ResponseWriter, req *http.Request, rt route, d digest.Digest) {
	ctx := req.Context()
	release, ok := r.holdOrRefuse(ctx, w, rt.repo, d, req.ContentLength, false)
	if !ok {
		return
	}
	defer release()
	start := req.Clone(ctx)
	start.Method = http.MethodPost
	start.URL = &url.URL{Path: "/v2/" + rt.repo + "/blobs/uploads/"}
	start.RequestURI = start.URL.RequestURI()
	start.Body = http.NoBody
	start.ContentLength = 0
	start.Header.Del("Content-Type")
	start.Header.Set("Content-Length", "0")
	rec := newBufferedWriter()
	r.engine.ServeHTTP(rec, start)
	if rec.status != http.StatusAccepted {
		rec.flushTo(w)
		return
	}
	loc, err := url.Parse(rec.header.Get("Location"))
	if err != nil {
		writeError(w, http.StatusInternalServerError, "UNKNOWN", "engine returned a bad upload location", nil)
		return
	}
	q := loc.Query()
	q.Set("digest", d.String())
	put := req.Clone(ctx)
	put.Method = http.MethodPut
	put.URL = &url.URL{Path: loc.Path, RawQuery: q.Encode()}
	put.RequestURI = put.URL.RequestURI()
	put.Header.Set("Content-Type", "application/octet-stream")
	r.completeUpload(w, put, rt.repo, path.Base(loc.Path), d)
}

// mountSource finds a repository to mount a blob from when the client did
// not name one: one that links the blob, in a namespace the caller may
// pull from, so that a mount never hands out a blob its caller could not
// have read. Empty when there is none; the engine then starts an upload.
func (r *Registry) mountSource(ctx context.Context, c *caller, target string, d digest.Digest) string {
	repos, err := r.allRepositories(ctx)
	if err != nil {
		return ""
	}
	allowed := map[string]bool{}
	for _, repo := range repos {
		if repo == target {
			continue
		}
		if c.token != nil && !c.token.allows("repository", repo, "pull") {
			continue // a registry token reads only what its scopes name
		}
		ns, _, _ := strings.Cut(repo, "/")
		ok, seen := allowed[ns]
		if !seen {
			err := r.cfg.Authorizer.Authorize(ctx, c.id, ns, "pull")
			ok = err == nil
			allowed[ns] = ok
			if errors.Is(err, v1.ErrUnavailable) {
				return ""
			}
		}
		if !ok {
			continue
		}
		if _, err := r.driver.Stat(ctx, layerLinkPath(repo, d)); err == nil {
			return repo
		}
	}
	return ""
}

// mountHook wraps the response to a mount of digest d into repo. On
// success it touches the blob and, for a non-canonical d, links the
// canonical blob into repo under both digests.
func (r *Registry) mountHook(w http.ResponseWriter, repo string, d, canonical digest.Digest) http.ResponseWriter {
	return &headerHook{ResponseWriter: w, hook: func(status int, h http.Header) {
		if status != http.StatusCreated {
			return
		}
		r.touches.add(d, r.now())
		if canonical == "" || canonical == d {
			return
		}
		r.touches.add(canonical, r.now())
		// Link both digests, as an upload does: reads resolve d to the
		// canonical digest and then look that up in the repository.
		for _, link := range []digest.Digest{canonical, d} {
			if err := r.driver.PutContent(context.Background(), layerLinkPath(repo, link), []byte(canonical.String())); err != nil {
				r.log.Error("registry: link mounted blob", "repo", repo, "digest", link, "err", err)
			}
		}
	}}
}

// blobHook wraps the response to a blob request for digest want. When
// the engine answers with success it records want and the canonical
// digest it names in the touch set (if touch) and shows the client want
// rather than the canonical digest.
func (r *Registry) blobHook(w http.ResponseWriter, want digest.Digest, touch bool) *headerHook {
	return &headerHook{ResponseWriter: w, hook: func(status int, h http.Header) {
		if status < 200 || status > 299 {
			return
		}
		if touch {
			r.touches.add(want, r.now())
		}
		canonical, err := digest.Parse(h.Get("Docker-Content-Digest"))
		if err != nil || canonical == want {
			return
		}
		if touch {
			r.touches.add(canonical, r.now())
		}
		h.Set("Docker-Content-Digest", want.String())
		if loc := h.Get("Location"); loc != "" {
			h.Set("Location", strings.Replace(loc, canonical.String(), want.String(), 1))
		}
	}}
}

// headerHook lets a hook adjust the headers just before they are sent.
// It keeps the start of an error body, to tell error codes apart.
type headerHook struct {
	http.ResponseWriter
	hook   func(status int, h http.Header)
	wrote  bool
	status int
	errBuf []byte
}

// errorCode is the first error code of an error response, if any.
func (h *headerHook) errorCode() string {
	var body struct {
		Errors []specError `json:"errors"`
	}
	if h.status < 400 || json.Unmarshal(h.errBuf, &body) != nil || len(body.Errors) == 0 {
		return ""
	}
	return body.Errors[0].Code
}

func (h *headerHook) WriteHeader(status int) {
	if !h.wrote {
		h.wrote = true
		h.status = status
		h.hook(status, h.Header())
	}
	h.ResponseWriter.WriteHeader(status)
}

func (h *headerHook) Write(p []byte) (int, error) {
	if !h.wrote {
		h.WriteHeader(http.StatusOK)
	}
	if h.status >= 400 && len(h.errBuf) < 4096 {
		h.errBuf = append(h.errBuf, p[:min(len(p), 4096-len(h.errBuf))]...)
	}
	return h.ResponseWriter.Write(p)
}

// ReadFrom keeps the underlying writer's sendfile path for blob bodies.
func (h *headerHook) ReadFrom(src io.Reader) (int64, error) {
	if !h.wrote {
		h.WriteHeader(http.StatusOK)
	}
	if rf, ok := h.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(struct{ io.Writer }{h.ResponseWriter}, src)
}

func (h *headerHook) Unwrap() http.ResponseWriter { return h.ResponseWriter }

// rangeErrorWriter gives the engine's answer to a Range it cannot satisfy
// (http.ServeContent's 416, in plain text) the JSON error body of every
// other registry error, keeping its Content-Range.
type rangeErrorWriter struct {
	http.ResponseWriter
	replaced bool
}

func (w *rangeErrorWriter) WriteHeader(code int) {
	if code != http.StatusRequestedRangeNotSatisfiable || w.replaced {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.replaced = true
	w.Header().Del("X-Content-Type-Options")
	msg := "the Range cannot be satisfied"
	if cr := w.Header().Get("Content-Range"); cr != "" {
		msg += ": the blob's bytes are " + cr
	}
	writeError(w.ResponseWriter, code, codeRangeInvalid, msg, nil)
}

func (w *rangeErrorWriter) Write(b []byte) (int, error) {
	if w.replaced {
		return len(b), nil // the engine's plain-text body
	}
	return w.ResponseWriter.Write(b)
}

func (w *rangeErrorWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
