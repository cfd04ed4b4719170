package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// `gantry join-token create --ttl -1h` (or --ttl 0) sent no expiry, and
// the server made a 24h token: a nonsense lifetime was not refused, as
// `gantry token create --expires -1h` refuses it.
func TestJoinTokenRefusesANonPositiveTTL(t *testing.T) {
	var sent []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		sent = append(sent, string(b))
		w.Write([]byte(`{"kind":"JoinToken","metadata":{"name":"abcd1234"},"spec":{"expires":"2030-01-01T00:00:00Z"},"token":"gjt_x"}`))
	}))
	defer srv.Close()
	for _, ttl := range []string{"-1h", "0"} {
		sent = nil
		out, err := runAgainst(t, srv.URL, "join-token", "create", "--ttl", ttl)
		if err == nil || !strings.Contains(err.Error(), "--ttl") || len(sent) > 0 {
			t.Errorf("join-token create --ttl %s: %v (%q), sent %s", ttl, err, strings.TrimSpace(out), strings.Join(sent, " "))
		}
	}
	if _, err := runAgainst(t, srv.URL, "join-token", "create", "--ttl", "1h"); err != nil || len(sent) != 1 || strings.Contains(sent[0], "0001-01-01") {
		t.Errorf("join-token create --ttl 1h: %v, sent %s", err, strings.Join(sent, " "))
	}
}
