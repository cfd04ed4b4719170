package registry

import (
	"net/http"
	"testing"
)

// A registry token (the Docker token flow of docker, containerd and
// go-containerregistry) was checked by its signature alone, and a scope
// it carried skipped the Authorizer: once the platform token it was
// issued for was revoked, it still pulled, pushed and deleted for its
// whole TTL. It now names that token, which must still work.
func TestRegistryTokenStopsWithItsPlatformToken(t *testing.T) {
	tr := newTestRegistry(t, nil)
	tr.push(t, mustRandom(t), "team/app:v1", adminToken)
	_, tok := fetchToken(t, tr, aliceToken, "repository:team/app:pull,push,delete")
	if tok.Token == "" {
		t.Fatal("no registry token")
	}
	if resp, body := bearer(t, tr, "GET", "/v2/team/app/tags/list", tok.Token); resp.StatusCode != http.StatusOK {
		t.Fatalf("before the revoke: %d %s", resp.StatusCode, body)
	}

	tr.auth.mu.Lock()
	delete(tr.auth.tokens, aliceToken) // gantry token revoke
	tr.auth.mu.Unlock()
	for _, c := range []struct{ method, path string }{
		{"GET", "/v2/team/app/tags/list"},
		{"POST", "/v2/team/app/blobs/uploads/"},
		{"DELETE", "/v2/team/app/manifests/v1"},
	} {
		resp, body := bearer(t, tr, c.method, c.path, tok.Token)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s %s with the registry token of a revoked token: %d %s; want 401", c.method, c.path, resp.StatusCode, body)
		}
	}
}

// A role taken away since a registry token was issued counts at once: the
// token's scope narrows what the Authorizer allows, never widens it.
func TestRegistryTokenScopeDoesNotOutliveARole(t *testing.T) {
	tr := newTestRegistry(t, nil)
	tr.push(t, mustRandom(t), "team/app:v1", adminToken)
	_, tok := fetchToken(t, tr, aliceToken, "repository:team/app:pull,push")
	tr.auth.mu.Lock()
	delete(tr.auth.grants, "alice") // gantry role unbind
	tr.auth.mu.Unlock()
	if resp, body := bearer(t, tr, "GET", "/v2/team/app/tags/list", tok.Token); resp.StatusCode != http.StatusForbidden {
		t.Errorf("the registry token of a user whose role was removed: %d %s; want 403", resp.StatusCode, body)
	}
}
