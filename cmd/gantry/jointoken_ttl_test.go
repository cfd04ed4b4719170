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
		sent = append(sent, r.URL.RawQuery+" "+string(b))
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
	// The lifetime goes as ttl, for the server to count on its clock.
	// This server (an older one, say) answers with an end of its own,
	// which is not an hour after its Date: the CLI says so.
	out, err := runAgainst(t, srv.URL, "join-token", "create", "--ttl", "1h")
	if err != nil || len(sent) != 1 || !strings.HasPrefix(sent[0], "ttl=1h0m0s ") {
		t.Errorf("join-token create --ttl 1h: %v, sent %s", err, strings.Join(sent, " "))
	}
	if !strings.Contains(out, "did not take --ttl 1h0m0s") {
		t.Errorf("join-token create --ttl 1h against a server that ignored it printed %q; want a warning", out)
	}
}

// join-token create told the new node to join the CLI's own server
// address, which gantry up and gantry server write as 127.0.0.1: on the
// new node that names the new node. A loopback address is replaced by
// this machine's outbound one, said as such.
func TestJoinServerIsOneANewNodeCanReach(t *testing.T) {
	for _, tc := range []struct{ server, outbound, want, note string }{
		{"https://gantry.example.com:7443", "10.0.0.5", "https://gantry.example.com:7443", ""},
		{"https://127.0.0.1:7443", "10.0.0.5", "https://10.0.0.5:7443", "outbound address"},
		{"https://localhost:7443", "10.0.0.5", "https://10.0.0.5:7443", "outbound address"},
		{"https://[::1]:7443", "fd00::5", "https://[fd00::5]:7443", "outbound address"},
		{"https://127.0.0.1:7443", "127.0.0.1", "https://SERVER-ADDRESS:7443", "SERVER-ADDRESS:"},
		{"https://[::1]", "fd00::5", "https://[fd00::5]", "outbound address"},
	} {
		got, note := joinServer(tc.server, tc.outbound)
		if got != tc.want || (tc.note == "") != (note == "") || !strings.Contains(note, tc.note) {
			t.Errorf("joinServer(%q, %q) = %q, %q; want %q with a note saying %q", tc.server, tc.outbound, got, note, tc.want, tc.note)
		}
	}
}
