package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strings"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// A namespace's registryStorage quota counts the bytes of the distinct
// blobs (layers, configs and manifests) that its repositories link: a
// blob shared by two of its repositories counts once, one shared with
// another namespace counts in both. It is checked when a blob is
// committed to a repository (the PUT that ends an upload, an upload in one
// POST, a mount, a manifest PUT). An upload's chunks count for nothing,
// but a chunk that would make its upload larger than the whole quota is
// refused before it streams in (checkChunkQuota), and an upload the quota
// refuses is removed with its data. A blob a manifest of the
// repository references cannot be unlinked (see deleteBlob): the
// collector keeps it, so the quota must go on counting it.

// errQuota is a refusal by the storage quota.
type errQuota struct {
	ns                   string
	used, request, limit int64
}

func (e *errQuota) Error() string {
	return fmt.Sprintf("quota exceeded in namespace %q: registryStorage: used %s + requested %s > limit %s; "+
		"remove images the namespace no longer needs (gantry image rm NAME@DIGEST) and run gantry registry gc, or ask a cluster admin to raise the quota",
		e.ns, v1.Bytes(e.used), v1.Bytes(e.request), v1.Bytes(e.limit))
}

// errLengthRequired is the refusal of a blob of unknown size where a
// quota applies.
var errLengthRequired = errors.New("namespace has a registryStorage quota: send the blob with a Content-Length")

// holdStorage checks that a blob d of size bytes (negative: unknown) fits
// the quota of repo's namespace and, if it does, returns a release to call
// once the blob is committed: until then, other commits to the namespace
// wait, so that two cannot both fit in the same room. Unless hold is set
// it only checks: a request whose body is still to stream in must not
// keep the namespace's other pushes waiting on a slow client (so commits
// that stream at the same moment may pass the quota by what they add
// together). A nil error with a nil release means no quota applies.
func (r *Registry) holdStorage(ctx context.Context, repo string, d digest.Digest, size int64, hold bool) (func(), error) {
	ns, _, _ := strings.Cut(repo, "/")
	limit, err := r.storageLimit(ctx, ns)
	if err != nil || limit <= 0 {
		return nil, err
	}
	unlock := r.lockNamespace(ns)
	err = r.fitStorage(ctx, ns, d, size, limit)
	if err != nil || !hold {
		unlock()
		return nil, err
	}
	return unlock, nil
}

// lockNamespace takes the lock of namespace ns (see Registry.nsLocks)
// and returns its unlock.
func (r *Registry) lockNamespace(ns string) func() {
	if r.nsLocking != nil {
		r.nsLocking(ns)
	}
	return r.nsLocks.Lock(ns)
}

// storageLimit is the registryStorage quota of namespace ns; 0 when it
// has none.
func (r *Registry) storageLimit(ctx context.Context, ns string) (int64, error) {
	if r.cfg.StorageQuota == nil {
		return 0, nil
	}
	limit, err := r.cfg.StorageQuota(ctx, ns)
	if err != nil {
		return 0, err
	}
	return max(limit, 0), nil
}

// fitStorage checks that a blob d of size bytes (negative: unknown) fits
// limit, the quota of namespace ns. The caller holds the namespace's
// lock when it goes on to commit the blob.
func (r *Registry) fitStorage(ctx context.Context, ns string, d digest.Digest, size, limit int64) error {
	used, has, err := r.storageUsage(ctx, ns, d)
	switch {
	case err != nil:
		return fmt.Errorf("%w: count the registry storage of namespace %q: %v", v1.ErrUnavailable, ns, err)
	case has:
		// Already counted: linking it again adds nothing.
		return nil
	case size < 0:
		return errLengthRequired
	case used+size > limit:
		return &errQuota{ns: ns, used: used, request: size, limit: limit}
	}
	return nil
}

// storageUsage sums the sizes of the distinct blobs (layers, configs and
// manifests) the repositories of namespace ns link, and says whether d is
// one of them. It walks that namespace's repositories only.
func (r *Registry) storageUsage(ctx context.Context, ns string, d digest.Digest) (used int64, has bool, err error) {
	seen := map[digest.Digest]bool{}
	root := path.Join(storageRoot, "repositories", ns)
	err = r.driver.Walk(ctx, root, func(fi storagedriver.FileInfo) error {
		p := fi.Path()
		if fi.IsDir() {
			// Uploads in progress, and tags (which link revisions
			// already counted), hold no blob of their own.
			if base := path.Base(p); base == "_uploads" || (base == "tags" && path.Base(path.Dir(p)) == "_manifests") {
				return storagedriver.ErrSkipDir
			}
			return nil
		}
		if path.Base(p) != "link" || !(strings.Contains(p, "/_layers/") || strings.Contains(p, "/_manifests/revisions/")) {
			return nil
		}
		// .../<alg>/<hex>/link names the digest as the repository
		// knows it; its content, the canonical blob.
		named := digest.NewDigestFromEncoded(digest.Algorithm(path.Base(path.Dir(path.Dir(p)))), path.Base(path.Dir(p)))
		target, ok := r.readLink(ctx, p)
		if !ok {
			return nil // removed meanwhile
		}
		if !seen[target] {
			st, err := r.driver.Stat(ctx, blobDataPath(target))
			if err != nil {
				// A link whose blob is gone (swept) holds nothing: the
				// blob must be sent, and counted, again.
				return nil
			}
			seen[target] = true
			used += st.Size()
		}
		if named == d || target == d {
			has = true
		}
		return nil
	})
	var nf storagedriver.PathNotFoundError
	if err != nil && !errors.As(err, &nf) {
		return 0, false, err
	}
	return used, has, nil
}

func blobDataPath(d digest.Digest) string {
	enc := d.Encoded()
	return path.Join(storageRoot, "blobs", string(d.Algorithm()), enc[:2], enc, "data")
}

// uploadedSize is what an upload in progress holds so far.
func (r *Registry) uploadedSize(ctx context.Context, repo, id string) int64 {
	size, _ := r.uploadSize(ctx, repo, id)
	return size
}

// uploadSize is what upload id holds so far; ok is false when there is no
// such upload (the engine answers for it).
func (r *Registry) uploadSize(ctx context.Context, repo, id string) (size int64, ok bool) {
	if !uploadID.MatchString(id) {
		return 0, false
	}
	st, err := r.driver.Stat(ctx, path.Join(storageRoot, "repositories", repo, "_uploads", id, "data"))
	if err != nil {
		return 0, false
	}
	return st.Size(), true
}

// holdOrRefuse is holdStorage for a handler: on a refusal it answers w
// and reports false; otherwise the release (a no-op where no quota
// applies) is to be deferred.
func (r *Registry) holdOrRefuse(ctx context.Context, w http.ResponseWriter, repo string, d digest.Digest, size int64, hold bool) (func(), bool) {
	release, err := r.holdStorage(ctx, repo, d, size, hold)
	if err != nil {
		writeQuotaError(w, err)
		return nil, false
	}
	if release == nil {
		release = func() {}
	}
	return release, true
}

// writeQuotaError answers a refusal by holdStorage.
func writeQuotaError(w http.ResponseWriter, err error) {
	var q *errQuota
	switch {
	case errors.As(err, &q):
		writeError(w, http.StatusForbidden, codeDenied, err.Error(), map[string]any{"namespace": q.ns, "used": q.used, "requested": q.request, "limit": q.limit})
	case errors.Is(err, errLengthRequired):
		writeError(w, http.StatusLengthRequired, codeUnsupported, err.Error(), nil)
	case errors.Is(err, v1.ErrUnavailable):
		writeError(w, http.StatusServiceUnavailable, codeUnavailable, err.Error(), nil)
	default:
		writeError(w, http.StatusInternalServerError, "UNKNOWN", err.Error(), nil)
	}
}
