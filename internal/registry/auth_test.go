package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"
)

func TestUnauthenticatedRequestsGetABearerChallenge(t *testing.T) {
	tr := newTestRegistry(t, nil)
	realm := "http://" + tr.host + "/v2/token"
	tests := []struct {
		name, method, path string
		wantChallenge      string
	}{
		{"a ping names no scope", "GET", "/v2/", `Bearer realm="` + realm + `",service="gantry"`},
		{"a push asks for pull and push", "POST", "/v2/team/app/blobs/uploads/",
			`Bearer realm="` + realm + `",service="gantry",scope="repository:team/app:pull,push"`},
		{"a pull asks for pull", "GET", "/v2/team/app/manifests/v1",
			`Bearer realm="` + realm + `",service="gantry",scope="repository:team/app:pull"`},
		{"the catalog asks for the catalog scope", "GET", "/v2/_catalog",
			`Bearer realm="` + realm + `",service="gantry",scope="registry:catalog:*"`},
		{"a delete asks for delete", "DELETE", "/v2/team/app/manifests/v1",
			`Bearer realm="` + realm + `",service="gantry",scope="repository:team/app:delete"`},
		{"a mount asks for the source too", "POST", "/v2/team/app/blobs/uploads/?mount=" + string(digest.FromString("x")) + "&from=shared/base",
			`Bearer realm="` + realm + `",service="gantry",scope="repository:team/app:pull,push repository:shared/base:pull"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := tr.do(t, tt.method, tt.path, "", nil, nil)
			wantError(t, resp, body, http.StatusUnauthorized, codeUnauthorized)
			if got := resp.Header.Get("WWW-Authenticate"); got != tt.wantChallenge {
				t.Errorf("WWW-Authenticate = %s\nwant                %s", got, tt.wantChallenge)
			}
			if resp.Header.Get(apiVersionHeader) != "registry/2.0" {
				t.Errorf("missing %s header", apiVersionHeader)
			}
		})
	}
}

func TestPublicURLSetsTheRealm(t *testing.T) {
	tr := newTestRegistry(t, func(c *Config) { c.PublicURL = "https://registry.example.com:5000/" })
	resp, _ := tr.do(t, "GET", "/v2/", "", nil, nil)
	if got := resp.Header.Get("WWW-Authenticate"); !strings.Contains(got, `realm="https://registry.example.com:5000/v2/token"`) {
		t.Errorf("challenge %s does not use the public URL", got)
	}
}

func TestBasicAuthWithTheTokenAsPassword(t *testing.T) {
	tr := newTestRegistry(t, nil)
	t.Run("a valid token is accepted whatever the user name", func(t *testing.T) {
		resp, body := tr.do(t, "GET", "/v2/", aliceToken, nil, nil)
		if resp.StatusCode != http.StatusOK || string(body) != "{}" {
			t.Fatalf("ping: %d %s", resp.StatusCode, body)
		}
	})
	t.Run("an unknown token is refused with a challenge", func(t *testing.T) {
		resp, body := tr.do(t, "GET", "/v2/", "nope", nil, nil)
		wantError(t, resp, body, http.StatusUnauthorized, codeUnauthorized)
		if resp.Header.Get("WWW-Authenticate") == "" {
			t.Error("no challenge")
		}
	})
	t.Run("a whole push and pull works with Basic only", func(t *testing.T) {
		layer := []byte("layer contents")
		config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
		for _, b := range [][]byte{layer, config} {
			resp, body := tr.do(t, "POST", "/v2/team/basic/blobs/uploads/?digest="+digest.FromBytes(b).String(), aliceToken, bytes.NewReader(b),
				map[string]string{"Content-Type": "application/octet-stream"})
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("upload in one POST: %d %s", resp.StatusCode, body)
			}
		}
		man := manifestJSON(t, config, layer)
		resp, body := tr.do(t, "PUT", "/v2/team/basic/manifests/v1", aliceToken, bytes.NewReader(man),
			map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("manifest put: %d %s", resp.StatusCode, body)
		}
		resp, body = tr.do(t, "GET", "/v2/team/basic/manifests/v1", bobToken, nil,
			map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"})
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, man) {
			t.Fatalf("manifest get: %d %s", resp.StatusCode, body)
		}
	})
	t.Run("a platform token is also taken as a Bearer token", func(t *testing.T) {
		req, _ := http.NewRequest("GET", tr.srv.URL+"/v2/", nil)
		req.Header.Set("Authorization", "Bearer "+aliceToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
}

// fetchToken runs the token request a Docker client makes after a
// challenge.
func fetchToken(t *testing.T, tr *testRegistry, token string, scopes ...string) (*http.Response, tokenResponse) {
	t.Helper()
	q := url.Values{"service": {"gantry"}, "scope": scopes}
	resp, body := tr.do(t, "GET", "/v2/token?"+q.Encode(), token, nil, nil)
	var tok tokenResponse
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &tok); err != nil {
			t.Fatalf("token body %s: %v", body, err)
		}
	}
	return resp, tok
}

func bearer(t *testing.T, tr *testRegistry, method, path, tok string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, tr.srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp, buf.Bytes()
}

func TestTokenFlow(t *testing.T) {
	tr := newTestRegistry(t, nil)
	tr.push(t, mustRandom(t), "team/app:v1", adminToken)

	t.Run("the token endpoint answers the Docker token response", func(t *testing.T) {
		resp, tok := fetchToken(t, tr, aliceToken, "repository:team/app:pull,push")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if tok.Token == "" || tok.Token != tok.AccessToken {
			t.Errorf("token %q and access_token %q must be set and equal", tok.Token, tok.AccessToken)
		}
		if tok.ExpiresIn != int((15 * time.Minute).Seconds()) {
			t.Errorf("expires_in %d", tok.ExpiresIn)
		}
		if _, err := time.Parse(time.RFC3339, tok.IssuedAt); err != nil {
			t.Errorf("issued_at %q: %v", tok.IssuedAt, err)
		}
	})
	t.Run("the token endpoint refuses bad credentials", func(t *testing.T) {
		resp, _ := fetchToken(t, tr, "nope", "repository:team/app:pull")
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d", resp.StatusCode)
		}
		resp, _ = fetchToken(t, tr, "", "repository:team/app:pull")
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("anonymous: status %d", resp.StatusCode)
		}
	})
	t.Run("a token carries only the scopes the user holds", func(t *testing.T) {
		_, tok := fetchToken(t, tr, bobToken, "repository:team/app:pull,push", "repository:other/x:pull")
		c, err := tr.signer.verify(tok.Token)
		if err != nil {
			t.Fatal(err)
		}
		if c.Subject != "bob" || !c.allows("repository", "team/app", "pull") || c.allows("repository", "team/app", "push") || c.allows("repository", "other/x", "pull") {
			t.Errorf("claims %+v", c)
		}
	})
	t.Run("a bearer token with the scope is accepted", func(t *testing.T) {
		_, tok := fetchToken(t, tr, bobToken, "repository:team/app:pull")
		resp, body := bearer(t, tr, "GET", "/v2/team/app/tags/list", tok.Token)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"v1"`) {
			t.Fatalf("tags: %d %s", resp.StatusCode, body)
		}
	})
	t.Run("a bearer token without the scope gets insufficient_scope when the user could have it", func(t *testing.T) {
		_, tok := fetchToken(t, tr, aliceToken, "repository:team/app:pull")
		resp, body := bearer(t, tr, "POST", "/v2/team/app/blobs/uploads/", tok.Token)
		wantError(t, resp, body, http.StatusUnauthorized, codeUnauthorized)
		if h := resp.Header.Get("WWW-Authenticate"); !strings.Contains(h, `error="insufficient_scope"`) || !strings.Contains(h, `scope="repository:team/app:pull,push"`) {
			t.Errorf("challenge %s", h)
		}
	})
	t.Run("a bearer token without the scope gets 403 when the user may not", func(t *testing.T) {
		_, tok := fetchToken(t, tr, bobToken, "repository:team/app:pull,push")
		resp, body := bearer(t, tr, "POST", "/v2/team/app/blobs/uploads/", tok.Token)
		e := wantError(t, resp, body, http.StatusForbidden, codeDenied)
		if !strings.Contains(e.Message, "user bob may not push team/app") || !strings.Contains(e.Message, "write on namespace team") {
			t.Errorf("message %q does not name the missing permission", e.Message)
		}
	})
	t.Run("a tampered token is refused", func(t *testing.T) {
		_, tok := fetchToken(t, tr, bobToken, "repository:team/app:pull")
		bad := tok.Token[:len(tok.Token)-2] + "AA"
		resp, body := bearer(t, tr, "GET", "/v2/team/app/tags/list", bad)
		wantError(t, resp, body, http.StatusUnauthorized, codeUnauthorized)
		if h := resp.Header.Get("WWW-Authenticate"); !strings.Contains(h, `error="invalid_token"`) {
			t.Errorf("challenge %s", h)
		}
	})
	t.Run("an expired token is refused", func(t *testing.T) {
		_, tok := fetchToken(t, tr, bobToken, "repository:team/app:pull")
		tr.now = func() time.Time { return time.Now().Add(16 * time.Minute) }
		defer func() { tr.now = time.Now }()
		resp, body := bearer(t, tr, "GET", "/v2/team/app/tags/list", tok.Token)
		wantError(t, resp, body, http.StatusUnauthorized, codeUnauthorized)
	})
	t.Run("the OAuth2 password grant containerd uses works", func(t *testing.T) {
		form := url.Values{"grant_type": {"password"}, "username": {"x"}, "password": {aliceToken},
			"scope": {"repository:team/app:pull"}, "service": {"gantry"}, "client_id": {"containerd-client"}}
		resp, err := http.PostForm(tr.srv.URL+"/v2/token", form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var tok tokenResponse
		if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != http.StatusOK || tok.AccessToken == "" {
			t.Fatalf("status %d, token %+v, err %v", resp.StatusCode, tok, err)
		}
	})
}

func TestClientsTakeTheTokenFlow(t *testing.T) {
	tr := newTestRegistry(t, nil)
	img := mustRandom(t)
	tr.push(t, img, "team/app:v1", aliceToken)
	got, err := remote.Image(tr.ref(t, "team/app:v1"), basic(bobToken))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	if d, _ := got.Digest(); d != want {
		t.Errorf("pulled %s, pushed %s", d, want)
	}

	t.Run("a push without write permission is denied with the reason", func(t *testing.T) {
		err := remote.Write(tr.ref(t, "team/app:v2"), img, basic(bobToken))
		var terr *transport.Error
		if !errors.As(err, &terr) || terr.StatusCode != http.StatusForbidden {
			t.Fatalf("err %v, want 403", err)
		}
		if !strings.Contains(err.Error(), "DENIED") || !strings.Contains(err.Error(), "write on namespace team") {
			t.Errorf("error %q does not say what is missing", err)
		}
	})
}

func TestRequestsFailWith503WhenCredentialsCannotBeChecked(t *testing.T) {
	tr := newTestRegistry(t, nil)
	tr.auth.setDown(true)
	resp, body := tr.do(t, "GET", "/v2/", aliceToken, nil, nil)
	wantError(t, resp, body, http.StatusServiceUnavailable, codeUnavailable)
}

func TestCatalogListsOnlyReadableNamespaces(t *testing.T) {
	tr := newTestRegistry(t, nil)
	img := mustRandom(t)
	for _, r := range []string{"team/a:v1", "team/b:v1", "shared/base:v1", "secret/x:v1"} {
		tr.push(t, img, r, adminToken)
	}
	tests := []struct {
		token string
		want  []string
	}{
		{adminToken, []string{"secret/x", "shared/base", "team/a", "team/b"}},
		{aliceToken, []string{"shared/base", "team/a", "team/b"}},
		{bobToken, []string{"team/a", "team/b"}},
	}
	for _, tt := range tests {
		t.Run("as "+tt.token, func(t *testing.T) {
			resp, body := tr.do(t, "GET", "/v2/_catalog", tt.token, nil, nil)
			var got struct{ Repositories []string }
			if err := json.Unmarshal(body, &got); err != nil || resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			if strings.Join(got.Repositories, " ") != strings.Join(tt.want, " ") {
				t.Errorf("catalog %v, want %v", got.Repositories, tt.want)
			}
		})
	}
	t.Run("pages follow the filtered list", func(t *testing.T) {
		resp, body := tr.do(t, "GET", "/v2/_catalog?n=2", aliceToken, nil, nil)
		if !strings.Contains(string(body), `["shared/base","team/a"]`) || !strings.Contains(resp.Header.Get("Link"), "last=team%2Fa") {
			t.Fatalf("page 1: %s, Link %s", body, resp.Header.Get("Link"))
		}
		resp, body = tr.do(t, "GET", "/v2/_catalog?n=2&last=team/a", aliceToken, nil, nil)
		if !strings.Contains(string(body), `["team/b"]`) || resp.Header.Get("Link") != "" {
			t.Fatalf("page 2: %s, Link %s", body, resp.Header.Get("Link"))
		}
	})
	t.Run("go-containerregistry's catalog takes the token flow", func(t *testing.T) {
		reg := tr.ref(t, "team/a:v1").Context().Registry
		repos, err := remote.Catalog(t.Context(), reg, basic(bobToken))
		if err != nil || strings.Join(repos, " ") != "team/a team/b" {
			t.Fatalf("catalog %v, %v", repos, err)
		}
	})
}
