package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The engine (distribution v3.1) has no Referrers API, which OCI 1.1
// clients such as cosign and notation rely on. Gantry keeps its own index
// on disk: one small file per (repository, subject, referrer), holding the
// referrer's descriptor, under
//
//	<DataDir>/referrers/<repo>/<subject alg>/<subject hex>/<alg>-<hex>.json
//
// An entry is written before the engine stores the manifest (so no stored
// manifest can be missing from the index), and a read keeps only entries
// whose manifest exists in the repository (so a deleted manifest, or one
// whose push failed after the entry was written, never shows). A PUT the
// engine refuses removes the entry it added (not one an earlier push of
// the same manifest wrote). The collector removes the stale entries left
// behind (by a crash, a deleted manifest) under its exclusive lock, when
// no manifest write is between writing its entry and storing its
// manifest.
type referrersIndex struct {
	root string
}

func (x *referrersIndex) dir(repo string, subject digest.Digest) string {
	return filepath.Join(x.root, filepath.FromSlash(repo), string(subject.Algorithm()), subject.Encoded())
}

func entryName(d digest.Digest) string { return string(d.Algorithm()) + "-" + d.Encoded() + ".json" }

func (x *referrersIndex) add(repo string, subject digest.Digest, desc ocispec.Descriptor) error {
	dir := x.dir(repo, subject)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(desc)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	return os.Rename(f.Name(), filepath.Join(dir, entryName(desc.Digest)))
}

// list returns the index entries for a subject, whether or not their
// manifests still exist.
func (x *referrersIndex) list(repo string, subject digest.Digest) ([]ocispec.Descriptor, error) {
	ents, err := os.ReadDir(x.dir(repo, subject))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []ocispec.Descriptor
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(x.dir(repo, subject), e.Name()))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, err
		}
		var d ocispec.Descriptor
		if err := json.Unmarshal(b, &d); err != nil {
			continue
		}
		out = append(out, d)
	}
	return out, nil
}

// has reports whether the index holds an entry for referrer under
// subject.
func (x *referrersIndex) has(repo string, subject, referrer digest.Digest) (bool, error) {
	_, err := os.Stat(filepath.Join(x.dir(repo, subject), entryName(referrer)))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, err
}

func (x *referrersIndex) remove(repo string, subject, referrer digest.Digest) error {
	err := os.Remove(filepath.Join(x.dir(repo, subject), entryName(referrer)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// walk calls fn for every entry of the index.
func (x *referrersIndex) walk(fn func(repo string, subject digest.Digest, desc ocispec.Descriptor) error) error {
	return filepath.WalkDir(x.root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			return nil
		}
		rel, err := filepath.Rel(x.root, filepath.Dir(p))
		if err != nil {
			return err
		}
		parts := strings.Split(filepath.ToSlash(rel), "/")
		if len(parts) < 3 {
			return nil
		}
		subject := digest.NewDigestFromEncoded(digest.Algorithm(parts[len(parts)-2]), parts[len(parts)-1])
		repo := strings.Join(parts[:len(parts)-2], "/")
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		var d ocispec.Descriptor
		if json.Unmarshal(b, &d) != nil {
			return nil
		}
		return fn(repo, subject, d)
	})
}

// serveReferrers answers GET /v2/<name>/referrers/<digest>: an image index
// of the manifests whose subject is the digest, filtered by
// ?artifactType= when given. Per the spec the answer is 200 with an empty
// index when there are none, even for an unknown subject.
func (r *Registry) serveReferrers(w http.ResponseWriter, req *http.Request, rt route) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, codeUnsupported, "the referrers API is read-only", nil)
		return
	}
	subject, err := digest.Parse(rt.ref)
	if err != nil {
		writeError(w, http.StatusBadRequest, codeDigestInvalid, fmt.Sprintf("%q is not a valid digest", rt.ref), nil)
		return
	}
	entries, err := r.referrers.list(rt.repo, subject)
	if err != nil {
		r.log.Error("registry: read referrers index", "repo", rt.repo, "subject", subject, "err", err)
		writeError(w, http.StatusInternalServerError, "UNKNOWN", "cannot read the referrers index", nil)
		return
	}
	artifactType := req.URL.Query().Get("artifactType")
	manifests := []ocispec.Descriptor{}
	if len(entries) > 0 {
		named, err := reference.WithName(rt.repo)
		if err != nil {
			writeError(w, http.StatusBadRequest, codeNameInvalid, err.Error(), nil)
			return
		}
		repo, err := r.ns.Repository(req.Context(), named)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "UNKNOWN", err.Error(), nil)
			return
		}
		ms, err := repo.Manifests(req.Context())
		if err != nil {
			writeError(w, http.StatusInternalServerError, "UNKNOWN", err.Error(), nil)
			return
		}
		for _, d := range entries {
			if artifactType != "" && d.ArtifactType != artifactType {
				continue
			}
			if ok, err := ms.Exists(req.Context(), d.Digest); err != nil || !ok {
				continue
			}
			manifests = append(manifests, d)
		}
	}
	sort.Slice(manifests, func(i, j int) bool { return manifests[i].Digest < manifests[j].Digest })
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: manifests}
	idx.SchemaVersion = 2
	b, err := json.Marshal(idx)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "UNKNOWN", err.Error(), nil)
		return
	}
	if artifactType != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	w.Header().Set("Content-Type", ocispec.MediaTypeImageIndex)
	w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	if req.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(b)
}
