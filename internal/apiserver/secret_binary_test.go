package apiserver_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// A reveal answered text: bytes that are not UTF-8 came back as U+FFFD,
// so a DER key or a keystore given as data reached containers (the agent
// reads the same answer for secret files) and `gantry secret get`
// corrupted. With encoding=base64 they come back as stored; without it the
// answer is the text older clients read.
func TestRevealReturnsBinaryValuesAsStored(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	c := ts.client(t, ts.Token)
	ctx := context.Background()
	bin := []byte{0xff, 0x00, 0x80, 'b', 'i', 'n'}
	if _, err := c.Apply(ctx, &v1.Secret{TypeMeta: v1.TypeMeta{Kind: "Secret"}, Metadata: v1.ObjectMeta{Name: "keys", Namespace: "default"},
		Data: map[string][]byte{"key.der": bin}, StringData: map[string]string{"note": "text ✓", "data": "a key named data"}}); err != nil {
		t.Fatal(err)
	}
	got, err := c.RevealSecret(ctx, "default", "keys")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got["key.der"], bin) || string(got["note"]) != "text ✓" || string(got["data"]) != "a key named data" || len(got) != 3 {
		t.Fatalf("revealed %q; want the values as stored", got)
	}
	// The text answer is unchanged for older clients.
	var text map[string]string
	if err := c.Sub(ctx, "GET", "Secret", "default", "keys", "reveal", nil, &text); err != nil {
		t.Fatal(err)
	}
	if text["note"] != "text ✓" || text["data"] != "a key named data" || !strings.Contains(text["key.der"], "\ufffd") {
		t.Fatalf("text reveal %q", text)
	}
	// An unknown encoding is refused.
	_, err = c.Do(ctx, http.MethodGet, "/api/v1/namespaces/default/secrets/keys/reveal", map[string][]string{"encoding": {"hex"}}, nil, nil)
	var se *v1.StatusError
	if !errors.As(err, &se) || se.Status.Code != http.StatusBadRequest || !strings.Contains(se.Status.Message, "base64") {
		t.Fatalf("encoding=hex: %v; want a 400 naming base64", err)
	}
}
