package registry

import (
	"net/http"
	"strings"
	"testing"
)

// A mount whose mount/from parameters travel in a form body instead of the
// URL query is refused: the permissions are worked out from the query,
// and the engine reads r.FormValue, which includes the POST body.
func TestMountInAFormBodyIsRefused(t *testing.T) {
	tr := newTestRegistry(t, nil)
	d := tr.uploadBlob(t, "secret/app", adminToken, []byte("confidential layer"))

	// alice may not read namespace secret: the query form is refused.
	resp, body := tr.do(t, "POST", "/v2/team/app/blobs/uploads/?mount="+d.String()+"&from=secret/app", aliceToken, nil, nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("query mount: %d %s, want 403", resp.StatusCode, body)
	}

	resp, body = tr.do(t, "POST", "/v2/team/app/blobs/uploads/", aliceToken,
		strings.NewReader("mount="+d.String()+"&from=secret/app"),
		map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "UNSUPPORTED") {
		t.Errorf("form-body mount from a namespace alice cannot read: %d %s; want 400 UNSUPPORTED", resp.StatusCode, body)
	}
	if resp, body := tr.do(t, "GET", "/v2/team/app/blobs/"+d.String(), aliceToken, nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET of the secret blob through team/app as alice: %d %q; want 404", resp.StatusCode, body)
	}
}

// A registry token scoped to team/app only: a mount without ?from= looks
// for a source only among the repositories the token may pull, not in
// every namespace its user may read.
func TestMountWithoutFromKeepsToTheTokensScope(t *testing.T) {
	tr := newTestRegistry(t, nil)
	d := tr.uploadBlob(t, "shared/base", adminToken, []byte("shared layer"))
	_, tok := fetchToken(t, tr, aliceToken, "repository:team/app:pull,push")
	bearer := map[string]string{"Authorization": "Bearer " + tok.Token}

	// The token does not let alice read shared/base directly.
	resp, body := tr.do(t, "GET", "/v2/shared/base/blobs/"+d.String(), "", nil, bearer)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("direct read with a team/app token: %d %s, want 401 insufficient_scope", resp.StatusCode, body)
	}
	resp, body = tr.do(t, "POST", "/v2/team/app/blobs/uploads/?mount="+d.String(), "", nil, bearer)
	if resp.StatusCode == http.StatusCreated {
		t.Fatalf("mount without from= with a token scoped to team/app mounted %s from shared/base: %d %s", d, resp.StatusCode, body)
	}
}
