package registry

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// routeKind names the /v2/ endpoints the front end tells apart. It mirrors
// the engine's router closely enough to decide which permission a request
// needs before the engine sees it.
type routeKind int

const (
	routeUnknown   routeKind = iota
	routeBase                // /v2/
	routeToken               // /v2/token
	routeCatalog             // /v2/_catalog
	routeManifest            // /v2/<name>/manifests/<reference>
	routeBlob                // /v2/<name>/blobs/<digest>
	routeUploads             // /v2/<name>/blobs/uploads/
	routeUpload              // /v2/<name>/blobs/uploads/<id>
	routeTags                // /v2/<name>/tags/list
	routeReferrers           // /v2/<name>/referrers/<digest>
)

type route struct {
	kind routeKind
	repo string // NAMESPACE/NAME
	ref  string // tag or digest, upload id
}

// namespace is the Gantry namespace the repository belongs to.
func (r route) namespace() string {
	ns, _, _ := strings.Cut(r.repo, "/")
	return ns
}

// repoPath splits "/v2/<name>/<endpoint>/<rest>". The name is greedy so
// that the last endpoint marker wins, as it does in the engine's router.
var repoPath = regexp.MustCompile(`^/v2/(.+)/(manifests|blobs|tags|referrers)/(.*)$`)

func parseRoute(p string) route {
	switch p {
	case "/v2", "/v2/":
		return route{kind: routeBase}
	case "/v2/token":
		return route{kind: routeToken}
	case "/v2/_catalog":
		return route{kind: routeCatalog}
	}
	m := repoPath.FindStringSubmatch(p)
	if m == nil {
		return route{}
	}
	rt := route{repo: m[1]}
	rest := m[3]
	switch m[2] {
	case "manifests":
		if rest != "" && !strings.Contains(rest, "/") {
			rt.kind, rt.ref = routeManifest, rest
		}
	case "blobs":
		switch {
		case rest == "uploads" || rest == "uploads/":
			rt.kind = routeUploads
		case strings.HasPrefix(rest, "uploads/") && !strings.Contains(rest[len("uploads/"):], "/"):
			rt.kind, rt.ref = routeUpload, rest[len("uploads/"):]
		case rest != "" && !strings.Contains(rest, "/"):
			rt.kind, rt.ref = routeBlob, rest
		}
	case "tags":
		if rest == "list" {
			rt.kind = routeTags
		}
	case "referrers":
		if rest != "" && !strings.Contains(rest, "/") {
			rt.kind, rt.ref = routeReferrers, rest
		}
	}
	if rt.kind == routeUnknown {
		return route{}
	}
	return rt
}

// validateRepo checks a repository name: the OCI grammar (lower case,
// separators only between alphanumerics, so no "..") and Gantry's rule
// that the first component is a namespace.
func validateRepo(name string) error {
	if name != strings.ToLower(name) {
		return fmt.Errorf("repository name %q must be lower case", name)
	}
	if _, err := reference.WithName(name); err != nil {
		return fmt.Errorf("repository name %q is invalid: %w", name, err)
	}
	ns, rest, ok := strings.Cut(name, "/")
	if !ok || rest == "" {
		return fmt.Errorf("repository name %q must be NAMESPACE/NAME, as in team/app", name)
	}
	if msg := v1.ValidateName(ns, 63); msg != "" {
		return fmt.Errorf("namespace %q of repository %q %s", ns, name, msg)
	}
	return nil
}

var tagPattern = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)

// checkReference answers 400 for a manifest reference that is neither a
// tag nor a well-formed digest, and returns false.
func checkReference(w http.ResponseWriter, ref string) bool {
	if strings.Contains(ref, ":") {
		if _, err := digest.Parse(ref); err != nil {
			writeError(w, http.StatusBadRequest, codeDigestInvalid, fmt.Sprintf("%q is not a valid digest", ref), nil)
			return false
		}
		return true
	}
	if !tagPattern.MatchString(ref) {
		writeError(w, http.StatusBadRequest, codeTagInvalid, fmt.Sprintf("%q is not a valid tag", ref), nil)
		return false
	}
	return true
}

// access is one permission a request needs: an action on a repository.
type access struct {
	repo   string
	action string // pull, push or delete
}

func (a access) namespace() string {
	ns, _, _ := strings.Cut(a.repo, "/")
	return ns
}

// needs lists the permissions a request needs, the way the engine's own
// access records do: reads pull; writes pull and push (the client reads
// back what it writes); deletes delete; a cross-repository mount also
// pulls the source.
func needs(r *http.Request, rt route) []access {
	if rt.repo == "" {
		return nil
	}
	var out []access
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		out = append(out, access{rt.repo, "pull"})
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		out = append(out, access{rt.repo, "pull"}, access{rt.repo, "push"})
	case http.MethodDelete:
		out = append(out, access{rt.repo, "delete"})
	}
	if rt.kind == routeUploads && r.Method == http.MethodPost {
		if from := r.URL.Query().Get("from"); from != "" && from != rt.repo {
			out = append(out, access{from, "pull"})
		}
	}
	return out
}
