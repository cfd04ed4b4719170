package registry

import (
	"strings"
	"testing"
	"time"
)

// FuzzParseRoute checks that any path parses without panicking and that
// a repository route always yields a name the path really contains.
func FuzzParseRoute(f *testing.F) {
	for _, s := range []string{"/v2/", "/v2/token", "/v2/_catalog", "/v2/a/b/manifests/v1", "/v2/a/b/blobs/uploads/",
		"/v2/a/b/blobs/uploads/x", "/v2/a/blobs/b/tags/list", "/v2/a/b/referrers/sha256:00", "/v2//manifests/x", "/v2/a/../b/tags/list"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		rt := parseRoute(p)
		if rt.kind == routeUnknown || rt.repo == "" {
			return
		}
		if !strings.HasPrefix(p, "/v2/"+rt.repo+"/") {
			t.Fatalf("%q parsed to repository %q", p, rt.repo)
		}
		if validateRepo(rt.repo) == nil && (strings.Contains(rt.repo, "..") || strings.ToLower(rt.repo) != rt.repo) {
			t.Fatalf("%q accepted", rt.repo)
		}
	})
}

// FuzzVerifyToken checks that no string but a token the signer made
// verifies.
func FuzzVerifyToken(f *testing.F) {
	s := &signer{key: []byte("k"), issuer: "i", audience: "a", now: time.Now}
	// Fixed claims: the fuzzing workers must all compute the same token.
	good, _ := s.sign(&claims{Issuer: "i", Audience: "a", Subject: "u", ID: "seed", Expires: 4102444800})
	f.Add(good)
	f.Add(tokenHeader + ".e30.")
	f.Add("not a token")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := s.verify(tok)
		if err == nil && tok != good {
			t.Fatalf("forged token %q verified as %+v", tok, c)
		}
	})
}
