package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/distribution/distribution/v3"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// maxCatalogPage caps ?n= as the engine does.
const maxCatalogPage = 1000

// repositories lists every repository with at least one manifest, sorted.
func (r *Registry) repositories(ctx context.Context) ([]string, error) {
	var repos []string
	err := r.ns.(distribution.RepositoryEnumerator).Enumerate(ctx, func(name string) error {
		repos = append(repos, name)
		return nil
	})
	var nf storagedriver.PathNotFoundError
	if err != nil && !errors.As(err, &nf) {
		return nil, err
	}
	sort.Strings(repos)
	return repos, nil
}

// allRepositories lists every repository that has anything stored, even
// only blobs or an upload, sorted.
func (r *Registry) allRepositories(ctx context.Context) ([]string, error) {
	root := path.Join(storageRoot, "repositories")
	seen := map[string]bool{}
	var repos []string
	err := r.driver.Walk(ctx, root, func(fi storagedriver.FileInfo) error {
		if !fi.IsDir() {
			return nil
		}
		base := path.Base(fi.Path())
		if !strings.HasPrefix(base, "_") {
			return nil
		}
		if repo := strings.TrimPrefix(path.Dir(fi.Path()), root+"/"); !seen[repo] {
			seen[repo] = true
			repos = append(repos, repo)
		}
		return storagedriver.ErrSkipDir
	})
	var nf storagedriver.PathNotFoundError
	if err != nil && !errors.As(err, &nf) {
		return nil, err
	}
	sort.Strings(repos)
	return repos, nil
}

// serveCatalog answers GET /v2/_catalog with the repositories of the
// namespaces the caller may pull from. The engine's catalog cannot filter,
// so the front end lists storage itself; pagination (?n=, ?last=, the Link
// header) applies to the filtered list.
func (r *Registry) serveCatalog(w http.ResponseWriter, req *http.Request, c *caller) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, codeUnsupported, "the catalog is read-only", nil)
		return
	}
	q := req.URL.Query()
	n := maxCatalogPage
	if s := q.Get("n"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			writeError(w, http.StatusBadRequest, "PAGINATION_NUMBER_INVALID", fmt.Sprintf("n=%q is not a valid page size", s), nil)
			return
		}
		n = min(v, maxCatalogPage)
	}
	last := q.Get("last")
	all, err := r.repositories(req.Context())
	if err != nil {
		r.log.Error("registry: list repositories", "err", err)
		writeError(w, http.StatusInternalServerError, "UNKNOWN", "cannot list repositories", nil)
		return
	}
	allowed := map[string]bool{}
	page := []string{}
	more := false
	for _, repo := range all {
		if last != "" && repo <= last {
			continue
		}
		ns, _, _ := strings.Cut(repo, "/")
		ok, seen := allowed[ns]
		if !seen {
			err := r.cfg.Authorizer.Authorize(req.Context(), c.id, ns, "pull")
			if errors.Is(err, v1.ErrUnavailable) {
				writeError(w, http.StatusServiceUnavailable, codeUnavailable, "cannot check permissions now, retry shortly", nil)
				return
			}
			ok = err == nil
			allowed[ns] = ok
		}
		if !ok {
			continue
		}
		if len(page) == n {
			more = true
			break
		}
		page = append(page, repo)
	}
	if more && len(page) > 0 {
		v := url.Values{"n": {strconv.Itoa(n)}, "last": {page[len(page)-1]}}
		w.Header().Set("Link", fmt.Sprintf(`</v2/_catalog?%s>; rel="next"`, v.Encode()))
	}
	b, _ := json.Marshal(map[string][]string{"repositories": page})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	if req.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(b)
}
