package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// Test tokens and what they may do.
const (
	adminToken = "tok-admin" // write everywhere
	aliceToken = "tok-alice" // write on team, read on shared
	bobToken   = "tok-bob"   // read on team
)

// fakeAuth is a small table of tokens and grants standing in for the
// platform's token store and RBAC.
type fakeAuth struct {
	tokens map[string]Identity
	// grants[user][namespace] is "read" or "write"; user "admin" may do
	// everything.
	grants map[string]map[string]string
	// down makes both calls fail as the store being unavailable.
	mu   sync.Mutex
	down bool
}

func newFakeAuth() *fakeAuth {
	return &fakeAuth{
		tokens: map[string]Identity{
			adminToken: {User: "admin"},
			aliceToken: {User: "alice"},
			bobToken:   {User: "bob"},
		},
		grants: map[string]map[string]string{
			"alice": {"team": "write", "shared": "read"},
			"bob":   {"team": "read"},
		},
	}
}

func (f *fakeAuth) setDown(d bool) { f.mu.Lock(); f.down = d; f.mu.Unlock() }

func (f *fakeAuth) isDown() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.down }

func (f *fakeAuth) Authenticate(_ context.Context, tok string) (Identity, error) {
	if f.isDown() {
		return Identity{}, fmt.Errorf("token store: %w", v1.ErrUnavailable)
	}
	f.mu.Lock()
	id, ok := f.tokens[tok]
	f.mu.Unlock()
	if !ok {
		return Identity{}, fmt.Errorf("unknown token: %w", v1.ErrUnauthorized)
	}
	id.Credential = "cred-" + tok
	return id, nil
}

// CredentialValid: a credential works while its token is in the table.
func (f *fakeAuth) CredentialValid(_ context.Context, cred string) error {
	if f.isDown() {
		return fmt.Errorf("token store: %w", v1.ErrUnavailable)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.tokens[strings.TrimPrefix(cred, "cred-")]; !ok {
		return fmt.Errorf("revoked: %w", v1.ErrUnauthorized)
	}
	return nil
}

func (f *fakeAuth) Authorize(_ context.Context, id Identity, ns, action string) error {
	if f.isDown() {
		return fmt.Errorf("role store: %w", v1.ErrUnavailable)
	}
	if id.User == "admin" {
		return nil
	}
	f.mu.Lock()
	have := f.grants[id.User][ns]
	f.mu.Unlock()
	need := permissionFor(action)
	if have == "write" || have == need {
		return nil
	}
	if have == "" {
		return fmt.Errorf("no role in namespace %s: %w", ns, v1.ErrForbidden)
	}
	return fmt.Errorf("role gives only %s: %w", have, v1.ErrForbidden)
}

type testRegistry struct {
	*Registry
	srv  *httptest.Server
	host string // 127.0.0.1:port
	auth *fakeAuth
	dir  string
}

// newTestRegistry starts a registry on a loopback httptest server.
// mutate, when given, adjusts the configuration first.
func newTestRegistry(t *testing.T, mutate func(*Config)) *testRegistry {
	t.Helper()
	auth := newFakeAuth()
	dir := t.TempDir()
	cfg := Config{DataDir: dir, Authenticator: auth, Authorizer: auth, TokenKey: []byte("test key")}
	if mutate != nil {
		mutate(&cfg)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	reg, err := New(context.Background(), cfg, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(func() {
		srv.Close()
		if err := reg.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &testRegistry{Registry: reg, srv: srv, host: strings.TrimPrefix(srv.URL, "http://"), auth: auth, dir: dir}
}

// do sends a request with optional Basic credentials (token as the
// password) and returns the response with its body read.
func (tr *testRegistry) do(t *testing.T, method, path, token string, body io.Reader, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, tr.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.SetBasicAuth("someone", token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func (tr *testRegistry) ref(t *testing.T, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(tr.host+"/"+s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

func basic(token string) remote.Option {
	return remote.WithAuth(&authn.Basic{Username: "someone", Password: token})
}

// push writes img to the registry as token through go-containerregistry,
// which takes the token flow.
func (tr *testRegistry) push(t *testing.T, img ggcr.Image, ref, token string) {
	t.Helper()
	if err := remote.Write(tr.ref(t, ref), img, basic(token)); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

// specErrors decodes a distribution-spec error body.
func specErrors(t *testing.T, b []byte) []specError {
	t.Helper()
	var body struct {
		Errors []specError `json:"errors"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("error body %q is not spec JSON: %v", b, err)
	}
	return body.Errors
}

func wantError(t *testing.T, resp *http.Response, body []byte, status int, code string) specError {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d; body %s", resp.StatusCode, status, body)
	}
	errs := specErrors(t, body)
	if len(errs) == 0 || errs[0].Code != code {
		t.Fatalf("errors %+v, want code %s", errs, code)
	}
	return errs[0]
}

func mustRandom(t *testing.T) ggcr.Image {
	t.Helper()
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// manifestJSON is an OCI image manifest for a config and layers, with
// optional extra top-level fields.
func manifestJSON(t *testing.T, config []byte, layers ...[]byte) []byte {
	t.Helper()
	return manifestWith(t, nil, config, layers...)
}

func manifestWith(t *testing.T, extra map[string]any, config []byte, layers ...[]byte) []byte {
	t.Helper()
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json",
			"digest": digest.FromBytes(config), "size": len(config)},
	}
	ls := []map[string]any{}
	for _, l := range layers {
		ls = append(ls, map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar",
			"digest": digest.FromBytes(l), "size": len(l)})
	}
	m["layers"] = ls
	for k, v := range extra {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// uploadBlob stores b in repo in one POST.
func (tr *testRegistry) uploadBlob(t *testing.T, repo, token string, b []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(b)
	resp, body := tr.do(t, "POST", "/v2/"+repo+"/blobs/uploads/?digest="+d.String(), token, bytes.NewReader(b),
		map[string]string{"Content-Type": "application/octet-stream"})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload %s to %s: %d %s", d, repo, resp.StatusCode, body)
	}
	return d
}

// putManifest stores a manifest and returns the response.
func (tr *testRegistry) putManifest(t *testing.T, repo, ref, token string, man []byte) (*http.Response, []byte) {
	t.Helper()
	return tr.do(t, "PUT", "/v2/"+repo+"/manifests/"+ref, token, bytes.NewReader(man),
		map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
}
