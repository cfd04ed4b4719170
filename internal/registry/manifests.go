package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/distribution/distribution/v3"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// manifestFields is what the front end reads out of a manifest or index
// on its way to the engine.
type manifestFields struct {
	SchemaVersion *int                 `json:"schemaVersion"`
	MediaType     string               `json:"mediaType"`
	ArtifactType  string               `json:"artifactType"`
	Config        *ocispec.Descriptor  `json:"config"`
	Layers        []ocispec.Descriptor `json:"layers"`
	Manifests     []ocispec.Descriptor `json:"manifests"`
	Subject       *ocispec.Descriptor  `json:"subject"`
	Annotations   map[string]string    `json:"annotations"`
}

// check finds what the engine would answer with a 500 rather than a
// client error: a schema version other than 2, a descriptor whose digest
// is malformed, a foreign-layer URL that is not http(s). It returns the
// error code and message, or "" if the fields are sound.
func (m *manifestFields) check() (code, msg string) {
	switch {
	case m.SchemaVersion == nil:
		return codeManifestInvalid, "schemaVersion is missing: image manifests and indexes are version 2"
	case *m.SchemaVersion != 2:
		return codeManifestInvalid, fmt.Sprintf("schemaVersion is %d; image manifests and indexes are version 2", *m.SchemaVersion)
	}
	descs := map[string]*ocispec.Descriptor{"config": m.Config, "subject": m.Subject}
	for i := range m.Layers {
		descs[fmt.Sprintf("layers[%d]", i)] = &m.Layers[i]
	}
	for i := range m.Manifests {
		descs[fmt.Sprintf("manifests[%d]", i)] = &m.Manifests[i]
	}
	for _, f := range slices.Sorted(maps.Keys(descs)) {
		d := descs[f]
		if d == nil {
			continue
		}
		if err := d.Digest.Validate(); err != nil {
			return codeDigestInvalid, fmt.Sprintf("%s.digest %q: %v", f, d.Digest, err)
		}
		for j, u := range d.URLs {
			if pu, err := url.Parse(u); err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
				return codeManifestInvalid, fmt.Sprintf("%s.urls[%d] %q is not an http or https URL", f, j, u)
			}
		}
	}
	return "", ""
}

func (m *manifestFields) references() []digest.Digest {
	var out []digest.Digest
	if m.Config != nil {
		out = append(out, m.Config.Digest)
	}
	for _, d := range m.Layers {
		out = append(out, d.Digest)
	}
	for _, d := range m.Manifests {
		out = append(out, d.Digest)
	}
	return out
}

// putManifest stores a manifest through the engine, adding what the
// engine lacks:
//   - a configurable size limit answered with 413;
//   - digests other than sha256: the engine addresses manifests by their
//     sha256 only, so a PUT by sha512:X is checked here, stored under its
//     sha256 and given a revision link sha512:X → sha256, which the
//     engine's storage follows on reads (it supports such cross-algorithm
//     links for blobs already);
//   - the referrers index entry when the manifest has a subject, and the
//     OCI-Subject response header;
//   - the push event.
func (r *Registry) putManifest(w http.ResponseWriter, req *http.Request, rt route, c *caller) {
	body, err := io.ReadAll(io.LimitReader(req.Body, r.cfg.MaxManifestSize+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, codeManifestInvalid, "reading the manifest: "+err.Error(), nil)
		return
	}
	if int64(len(body)) > r.cfg.MaxManifestSize {
		writeError(w, http.StatusRequestEntityTooLarge, codeManifestInvalid,
			fmt.Sprintf("manifest is larger than the registry's limit of %d bytes", r.cfg.MaxManifestSize),
			map[string]int64{"limit": r.cfg.MaxManifestSize})
		return
	}
	canonical := digest.SHA256.FromBytes(body)
	dgst := canonical
	if d, err := digest.Parse(rt.ref); err == nil {
		if !d.Algorithm().Available() {
			writeError(w, http.StatusBadRequest, codeDigestInvalid, "unsupported digest algorithm "+string(d.Algorithm()), nil)
			return
		}
		if dgst = d.Algorithm().FromBytes(body); dgst != d {
			writeError(w, http.StatusBadRequest, codeDigestInvalid,
				fmt.Sprintf("manifest digest is %s, not %s as the request says", dgst, d), nil)
			return
		}
	}
	// ?tag= on a PUT by digest tags the manifest too (OCI 1.1+dev), which
	// is how tags can point at a manifest stored under a non-sha256
	// digest.
	var tags []string
	if _, err := digest.Parse(rt.ref); err == nil {
		for _, tag := range req.URL.Query()["tag"] {
			if !tagPattern.MatchString(tag) {
				writeError(w, http.StatusBadRequest, codeTagInvalid, fmt.Sprintf("%q is not a valid tag", tag), nil)
				return
			}
			tags = append(tags, tag)
		}
	}
	var m manifestFields
	// A body that is not JSON is the engine's to refuse (MANIFEST_INVALID).
	parsed := json.Unmarshal(body, &m) == nil
	if parsed {
		if code, msg := m.check(); code != "" {
			writeError(w, http.StatusBadRequest, code, msg, nil)
			return
		}
	}
	mediaType := m.MediaType
	if mediaType == "" {
		mediaType, _, _ = strings.Cut(req.Header.Get("Content-Type"), ";")
	}

	// The namespace's lock is held until the manifest is committed,
	// whether or not the namespace has a quota. With a quota, it keeps
	// two commits from both fitting in the same room. In every
	// namespace, it keeps the commit of a manifest from landing inside a
	// blob delete, which holds the lock from its check that no manifest
	// references the blob until the unlink (see deleteBlob). It also
	// keeps other PUTs of this manifest out while the referrers entry
	// written below may be removed again.
	ns := rt.namespace()
	limit, err := r.storageLimit(req.Context(), ns)
	if err != nil {
		writeQuotaError(w, err)
		return
	}
	r.writeMu.RLock()
	defer r.writeMu.RUnlock()
	unlock := r.lockNamespace(ns)
	defer unlock()
	if limit > 0 {
		if err := r.fitStorage(req.Context(), ns, canonical, int64(len(body)), limit); err != nil {
			writeQuotaError(w, err)
			return
		}
	}
	var subject digest.Digest
	if parsed && m.Subject != nil && m.Subject.Digest.Validate() == nil {
		subject = m.Subject.Digest
	}
	// addedReferrer is set when this PUT wrote a referrers entry that did
	// not exist before: it goes again if the engine refuses the manifest.
	addedReferrer := false
	if subject != "" {
		// Written before the engine commits the manifest, so that a
		// crash in between leaves an entry whose manifest does not
		// exist (filtered out on read, pruned by GC) rather than a
		// manifest missing from the index.
		artifactType := m.ArtifactType
		if artifactType == "" && m.Config != nil && mediaType == ocispec.MediaTypeImageManifest {
			artifactType = m.Config.MediaType
		}
		desc := ocispec.Descriptor{
			MediaType:    mediaType,
			Digest:       dgst,
			Size:         int64(len(body)),
			ArtifactType: artifactType,
			Annotations:  m.Annotations,
		}
		existed, err := r.referrers.has(rt.repo, subject, dgst)
		if err == nil {
			err = r.referrers.add(rt.repo, subject, desc)
		}
		if err != nil {
			r.log.Error("registry: write referrers index", "repo", rt.repo, "subject", subject, "err", err)
			writeError(w, http.StatusInternalServerError, "UNKNOWN", "cannot record the manifest's subject", nil)
			return
		}
		addedReferrer = !existed
	}

	fwd := req.Clone(req.Context())
	fwd.Body = io.NopCloser(bytes.NewReader(body))
	fwd.ContentLength = int64(len(body))
	fwd.Header.Set("Content-Length", strconv.Itoa(len(body)))
	if dgst != canonical {
		fwd.URL.Path = strings.TrimSuffix(fwd.URL.Path, rt.ref) + canonical.String()
		fwd.URL.RawPath = ""
	}
	rec := newBufferedWriter()
	r.toEngine(rec, fwd)

	if rec.status != http.StatusCreated && addedReferrer {
		// The manifest was not stored: its entry would only wait for
		// the next collection. The namespace's lock keeps any other PUT
		// of this manifest out since the entry was written.
		if err := r.referrers.remove(rt.repo, subject, dgst); err != nil {
			r.log.Warn("registry: remove the referrers entry of a refused manifest", "repo", rt.repo, "subject", subject, "digest", dgst, "err", err)
		}
	}
	if rec.status == http.StatusCreated {
		// The manifest and what it references are recorded for the
		// collector only now that the engine has stored it: a refused
		// manifest may name any number of made-up digests, and past the
		// touch set's limit every blob counts as touched, so gc would
		// free nothing. Recording them after the commit is as safe as
		// before it: writeMu is still held shared, and a collection's
		// sweep needs it exclusively, so no sweep runs between the
		// commit and these records. A sweep that ran before this PUT
		// took writeMu deleted what it deleted, and the engine then
		// refused a manifest naming those blobs; a collection whose
		// barrier passed before this PUT took writeMu may have marked
		// without this manifest, but its sweep, which comes after the
		// RUnlock, finds the touches (made after its barrier, so after
		// its cutoff) and keeps the blobs.
		now := r.now()
		r.touches.add(canonical, now)
		for _, d := range m.references() {
			r.touches.add(d, now)
			if d.Algorithm() != digest.Canonical && d.Validate() == nil {
				// The blob on disk is the sha256 one the repository's
				// link names: that is what a sweep would delete.
				if t, ok := r.readLink(req.Context(), layerLinkPath(rt.repo, d)); ok {
					r.touches.add(t, now)
				}
			}
		}
		if subject != "" {
			rec.header.Set("OCI-Subject", subject.String())
		}
	}
	if rec.status == http.StatusCreated && dgst != canonical {
		if err := r.linkRevision(req.Context(), rt.repo, dgst, canonical); err != nil {
			r.log.Error("registry: link manifest digest", "repo", rt.repo, "digest", dgst, "err", err)
			writeError(w, http.StatusInternalServerError, "UNKNOWN", "cannot record the manifest under "+dgst.String(), nil)
			return
		}
		rec.header.Set("Docker-Content-Digest", dgst.String())
		if loc := rec.header.Get("Location"); loc != "" {
			rec.header.Set("Location", strings.Replace(loc, canonical.String(), dgst.String(), 1))
		}
	}
	if rec.status == http.StatusCreated && len(tags) > 0 {
		if err := r.tagManifest(req.Context(), rt.repo, dgst, tags); err != nil {
			r.log.Error("registry: tag manifest", "repo", rt.repo, "digest", dgst, "tags", tags, "err", err)
			writeError(w, http.StatusInternalServerError, "UNKNOWN", "cannot tag the manifest", nil)
			return
		}
		for _, tag := range tags {
			rec.header.Add("OCI-Tag", tag)
		}
	}
	rec.flushTo(w)
	if rec.status != http.StatusCreated {
		return
	}
	if _, err := digest.Parse(rt.ref); err != nil {
		tags = []string{rt.ref}
	}
	if len(tags) == 0 {
		tags = []string{""}
	}
	for _, tag := range tags {
		r.events.emit(Event{Action: ActionPush, Repository: rt.repo, Namespace: rt.namespace(), Tag: tag, Digest: dgst.String(),
			MediaType: mediaType, Size: int64(len(body)), User: c.id.User, Node: c.id.Node, Time: r.now()})
	}
}

// tagManifest points tags at a stored manifest, through the storage
// view: the engine's HTTP API tags only what is pushed by tag, and
// always under its sha256.
func (r *Registry) tagManifest(ctx context.Context, repo string, d digest.Digest, tags []string) error {
	rp, err := r.repository(ctx, repo)
	if err != nil {
		return err
	}
	ts := rp.Tags(ctx)
	for _, tag := range tags {
		if err := ts.Tag(ctx, tag, ocispec.Descriptor{Digest: d}); err != nil {
			return fmt.Errorf("tag %s: %w", tag, err)
		}
	}
	return nil
}

// Paths of the engine's storage layout (stable since distribution 2.0).
const storageRoot = "/docker/registry/v2"

func revisionLinkPath(repo string, d digest.Digest) string {
	return path.Join(storageRoot, "repositories", repo, "_manifests", "revisions", string(d.Algorithm()), d.Encoded(), "link")
}

// readLink reads the digest a link file of the storage names (a
// repository's name for a blob or manifest points at the canonical one);
// ok is false if there is no such file or it holds no digest.
func (r *Registry) readLink(ctx context.Context, p string) (digest.Digest, bool) {
	b, err := r.driver.GetContent(ctx, p)
	if err != nil {
		return "", false
	}
	d, err := digest.Parse(strings.TrimSpace(string(b)))
	return d, err == nil
}

func (r *Registry) linkRevision(ctx context.Context, repo string, alias, canonical digest.Digest) error {
	return r.driver.PutContent(ctx, revisionLinkPath(repo, alias), []byte(canonical.String()))
}

// deleteManifest deletes a tag or a manifest through the engine, after
// Config.CanDelete agrees (unless ?force=true), and emits the events. A
// manifest goes under every digest it is stored by (the sha256 the engine
// keeps and the aliases it was pushed under, see putManifest) and with
// every tag that points at one of them, so that nothing of it stays
// behind. CanDelete is asked about each of those names, not only the one
// the request gives: an App pins the sha256 and a tag, and deleting the
// manifest by an alias takes both.
func (r *Registry) deleteManifest(w http.ResponseWriter, req *http.Request, rt route, c *caller) {
	force, _ := strconv.ParseBool(req.URL.Query().Get("force"))
	d, isDigest := digest.Parse(rt.ref)
	var others []digest.Digest // the manifest's other digests
	var tags []string          // the tags that go with it
	if isDigest == nil {
		var err error
		if others, tags, err = r.manifestNames(req.Context(), rt.repo, d); err != nil {
			r.log.Error("registry: list the names of a manifest to delete", "repo", rt.repo, "digest", d, "err", err)
			writeError(w, http.StatusInternalServerError, "UNKNOWN", "cannot list the digests and tags of "+rt.ref, nil)
			return
		}
	}
	if !force && r.cfg.CanDelete != nil {
		refs := []string{rt.ref}
		for _, o := range others {
			refs = append(refs, o.String())
		}
		refs = append(refs, tags...)
		// A manifest that an index of the repository lists is part of
		// every image that index is (a platform of a multi-platform
		// image): the names of those indexes are asked about too.
		parents := map[string]digest.Digest{}
		if isDigest == nil {
			ps, err := r.indexesListing(req.Context(), rt.repo, append([]digest.Digest{d}, others...))
			if err != nil {
				r.log.Error("registry: find the indexes that list a manifest to delete", "repo", rt.repo, "digest", d, "err", err)
				writeError(w, http.StatusInternalServerError, "UNKNOWN", "cannot read the indexes of "+rt.repo+" that may list "+rt.ref, nil)
				return
			}
			for _, p := range ps {
				pOthers, pTags, err := r.manifestNames(req.Context(), rt.repo, p)
				if err != nil {
					r.log.Error("registry: list the names of an index", "repo", rt.repo, "digest", p, "err", err)
					writeError(w, http.StatusInternalServerError, "UNKNOWN", "cannot list the digests and tags of "+p.String(), nil)
					return
				}
				for _, n := range append(append([]string{p.String()}, pTags...), digestStrings(pOthers)...) {
					if _, ok := parents[n]; !ok {
						parents[n] = p
						refs = append(refs, n)
					}
				}
			}
		}
		for _, ref := range refs {
			err := r.cfg.CanDelete(req.Context(), rt.repo, ref)
			if err == nil {
				continue
			}
			if errors.Is(err, v1.ErrUnavailable) {
				writeError(w, http.StatusServiceUnavailable, codeUnavailable, fmt.Sprintf("cannot tell now whether %s:%s is in use, retry shortly: %v", rt.repo, rt.ref, err), nil)
				return
			}
			msg := fmt.Sprintf("%s:%s cannot be deleted: %v (force it with gantry image rm --force, or ?force=true)", rt.repo, rt.ref, err)
			switch p, ok := parents[ref]; {
			case ok:
				msg = fmt.Sprintf("%s:%s cannot be deleted: index %s@%s lists it (one platform of that image), and %s:%s: %v (force it with gantry image rm --force, or ?force=true)",
					rt.repo, rt.ref, rt.repo, p, rt.repo, ref, err)
			case ref != rt.ref:
				msg = fmt.Sprintf("%s:%s cannot be deleted: it takes %s:%s with it: %v (force it with gantry image rm --force, or ?force=true)",
					rt.repo, rt.ref, rt.repo, ref, err)
			}
			writeError(w, http.StatusConflict, codeDenied, msg, map[string]string{"repository": rt.repo, "reference": ref})
			return
		}
	}
	rec := &statusWriter{ResponseWriter: w}
	r.toEngine(rec, req)
	if rec.status != http.StatusAccepted {
		return
	}
	event := func(tag string, dg digest.Digest) {
		r.events.emit(Event{Action: ActionDelete, Repository: rt.repo, Namespace: rt.namespace(), Tag: tag, Digest: dg.String(),
			User: c.id.User, Node: c.id.Node, Time: r.now()})
	}
	if isDigest != nil {
		event(rt.ref, "")
		return
	}
	event("", d)
	// The engine deleted the manifest under d with the tags that point
	// at d; the other digests take the tags that point through them.
	for _, other := range others {
		sub := req.Clone(req.Context())
		sub.URL.Path = strings.TrimSuffix(req.URL.Path, rt.ref) + other.String()
		sub.URL.RawPath = ""
		sw := newBufferedWriter()
		r.engine.ServeHTTP(sw, sub)
		if sw.status == http.StatusAccepted {
			event("", other)
		}
	}
	for _, tag := range tags {
		event(tag, "")
	}
}

// manifestNames lists what deleting manifest d of repo takes with it: its
// other digests (the sha256 it is stored by and the aliases linked to
// that) and the tags that point at d or at one of them.
func (r *Registry) manifestNames(ctx context.Context, repo string, d digest.Digest) (others []digest.Digest, tags []string, err error) {
	canonical := d
	if d.Algorithm() != digest.SHA256 {
		if t, ok := r.readLink(ctx, revisionLinkPath(repo, d)); ok {
			canonical = t
		}
	}
	all := append([]digest.Digest{canonical}, r.revisionAliases(ctx, repo, canonical)...)
	rp, err := r.repository(ctx, repo)
	if err != nil {
		return nil, nil, err
	}
	ts := rp.Tags(ctx)
	seen := map[digest.Digest]bool{}
	for _, x := range append(all, d) {
		if seen[x] {
			continue
		}
		seen[x] = true
		if x != d {
			others = append(others, x)
		}
		found, err := ts.Lookup(ctx, ocispec.Descriptor{Digest: x})
		if err != nil {
			return nil, nil, fmt.Errorf("tags of %s: %w", x, err)
		}
		tags = append(tags, found...)
	}
	slices.Sort(tags) // Lookup's order varies; ask and report in a stable one
	return others, tags, nil
}

// errStopManifests ends eachManifest early, with no error.
var errStopManifests = errors.New("stop")

// eachManifest calls fn with each manifest stored in the repository rp
// (named name), leaving out those deleted since they were listed; a
// repository with none has none. Any other failure to read one is an
// error: what it references would go unseen. fn may end the walk with
// errStopManifests.
func eachManifest(ctx context.Context, rp distribution.Repository, name string, fn func(digest.Digest, distribution.Manifest) error) error {
	ms, err := rp.Manifests(ctx)
	if err != nil {
		return err
	}
	stopped := false
	err = ms.(distribution.ManifestEnumerator).Enumerate(ctx, func(d digest.Digest) error {
		man, err := ms.Get(ctx, d)
		var unknown distribution.ErrManifestUnknownRevision
		var gone storagedriver.PathNotFoundError
		switch {
		case errors.As(err, &unknown) || errors.As(err, &gone) || errors.Is(err, distribution.ErrBlobUnknown):
			return nil // deleted since it was listed
		case err != nil:
			// Any other failure to read it (an I/O error, too many
			// open files) must not pass for its absence.
			return fmt.Errorf("read manifest %s: %w", d, err)
		}
		err = fn(d, man)
		// The storage driver's walk does not wrap the error that stops
		// it: tell the early stop apart here.
		stopped = err == errStopManifests
		return err
	})
	var nf storagedriver.PathNotFoundError
	if stopped || err == nil || errors.As(err, &nf) {
		return nil
	}
	return fmt.Errorf("manifests of %s: %w", name, err)
}

// repository opens the engine's repository name.
func (r *Registry) repository(ctx context.Context, name string) (distribution.Repository, error) {
	named, err := reference.WithName(name)
	if err != nil {
		return nil, err
	}
	return r.ns.Repository(ctx, named)
}

// indexesListing returns the indexes (and manifest lists) of repo that
// list one of ds as a manifest, and, in turn, those that list them.
func (r *Registry) indexesListing(ctx context.Context, repo string, ds []digest.Digest) ([]digest.Digest, error) {
	rp, err := r.repository(ctx, repo)
	if err != nil {
		return nil, err
	}
	children := map[digest.Digest][]digest.Digest{} // index → what it lists
	err = eachManifest(ctx, rp, repo, func(d digest.Digest, man distribution.Manifest) error {
		if mt, _, err := man.Payload(); err != nil || (mt != ocispec.MediaTypeImageIndex && mt != mediaTypeDockerManifestList) {
			return nil
		}
		for _, ref := range man.References() {
			children[d] = append(children[d], ref.Digest)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	listed := map[digest.Digest]bool{}
	for _, d := range ds {
		listed[d] = true
	}
	var out []digest.Digest
	for grew := true; grew; {
		grew = false
		for idx, kids := range children {
			if listed[idx] || !slices.ContainsFunc(kids, func(k digest.Digest) bool { return listed[k] }) {
				continue
			}
			listed[idx], grew = true, true
			out = append(out, idx)
		}
	}
	slices.Sort(out)
	return out, nil
}

// mediaTypeDockerManifestList is Docker's multi-platform index.
const mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"

func digestStrings(ds []digest.Digest) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.String()
	}
	return out
}

// revisionAliases lists the non-sha256 revision links of repo that point
// at the sha256 manifest d (see putManifest).
func (r *Registry) revisionAliases(ctx context.Context, repo string, d digest.Digest) []digest.Digest {
	root := path.Join(storageRoot, "repositories", repo, "_manifests", "revisions")
	algs, err := r.driver.List(ctx, root)
	if err != nil {
		return nil
	}
	var out []digest.Digest
	for _, algDir := range algs {
		alg := digest.Algorithm(path.Base(algDir))
		if alg == digest.SHA256 || !alg.Available() {
			continue
		}
		entries, err := r.driver.List(ctx, algDir)
		if err != nil {
			continue
		}
		for _, e := range entries {
			alias := digest.NewDigestFromEncoded(alg, path.Base(e))
			if t, ok := r.readLink(ctx, revisionLinkPath(repo, alias)); ok && t == d {
				out = append(out, alias)
			}
		}
	}
	return out
}

// bufferedWriter holds a small response (a manifest PUT's) so that its
// headers can be adjusted after the engine wrote them.
type bufferedWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newBufferedWriter() *bufferedWriter { return &bufferedWriter{header: http.Header{}} }

func (b *bufferedWriter) Header() http.Header { return b.header }

func (b *bufferedWriter) WriteHeader(status int) {
	if b.status == 0 {
		b.status = status
	}
}

func (b *bufferedWriter) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}

func (b *bufferedWriter) flushTo(w http.ResponseWriter) {
	h := w.Header()
	for k, v := range b.header {
		h[k] = v
	}
	if b.status == 0 {
		b.status = http.StatusOK
	}
	w.WriteHeader(b.status)
	_, _ = w.Write(b.body.Bytes())
}
