package pki

import (
	"strings"
	"testing"
	"time"
)

// FuzzParseJoinToken: no input panics, and what parses has the shape a
// token has and round-trips.
func FuzzParseJoinToken(f *testing.F) {
	f.Add("gjt_abcdefgh_" + strings.Repeat("a", 52) + "_" + strings.Repeat("b", 52))
	f.Add("gjt_")
	f.Add("gjt_a_b_c")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		jc, err := ParseJoinToken(tok)
		if err != nil {
			return
		}
		if len(jc.ID) != 8 || len(jc.Secret) != 52 || len(jc.CAPin) != 52 {
			t.Fatalf("parsed a malformed token: %+v", jc)
		}
		if got := "gjt_" + jc.ID + "_" + jc.Secret + "_" + jc.CAPin; got != strings.TrimSpace(tok) {
			t.Fatalf("parts %q do not make up the token %q", got, tok)
		}
		// A stored record never matches a token it was not made for.
		rec := JoinToken{ID: jc.ID, Hash: hashJoinSecret("other"), Expires: time.Now().Add(time.Hour)}
		if rec.Verify(tok, time.Now()) == nil {
			t.Fatal("verified against another secret's hash")
		}
	})
}

// FuzzVerifyNodeCSR: no input panics, and an accepted request always
// names the node asked for.
func FuzzVerifyNodeCSR(f *testing.F) {
	key, err := NewKey()
	if err != nil {
		f.Fatal(err)
	}
	good, err := NodeCSR("n1", key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good, "n1")
	f.Add(good, "n2")
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n-----END CERTIFICATE REQUEST-----\n"), "n1")
	f.Fuzz(func(t *testing.T, csrPEM []byte, node string) {
		csr, err := VerifyNodeCSR(csrPEM, node)
		if err != nil {
			return
		}
		if csr.Subject.CommonName != NodeCommonName(node) {
			t.Fatalf("accepted a request for %q as node %q", csr.Subject.CommonName, node)
		}
	})
}
