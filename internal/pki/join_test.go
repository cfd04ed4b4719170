package pki

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

func TestJoinTokens(t *testing.T) {
	ca, _ := newTestCA(t)
	now := time.Date(2030, 5, 1, 12, 0, 0, 0, time.UTC)
	tok, rec, err := NewJoinToken(ca.Pin(), time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	jc, err := ParseJoinToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	if jc.ID != rec.ID || jc.CAPin != ca.Pin() {
		t.Fatalf("parsed %+v from %q", jc, tok)
	}
	stored, _ := json.Marshal(rec)
	if bytes.Contains(stored, []byte(jc.Secret)) {
		t.Fatal("the stored record contains the secret")
	}
	if !rec.Expires.Equal(now.Add(time.Hour)) {
		t.Fatalf("expires %v", rec.Expires)
	}
	other, _, _ := NewJoinToken(ca.Pin(), time.Hour, now)
	otherJC, _ := ParseJoinToken(other)
	for _, tc := range []struct {
		name string
		tok  string
		at   time.Time
		ok   bool
	}{
		{"the token is accepted before it expires", tok, now.Add(59 * time.Minute), true},
		{"the token with surrounding space is accepted", " " + tok + "\n", now, true},
		{"the token is refused once it expires", tok, now.Add(time.Hour), false},
		{"another token is refused", other, now, false},
		{"this ID with another secret is refused", "gjt_" + jc.ID + "_" + otherJC.Secret + "_" + jc.CAPin, now, false},
		{"a truncated token is refused", tok[:len(tok)-1], now, false},
		{"an API token is refused", "gtk_abcdefgh_" + jc.Secret, now, false},
		{"an empty token is refused", "", now, false},
		{"a token with non-base32 characters is refused", "gjt_" + jc.ID + "_" + strings.Repeat("!", 52) + "_" + jc.CAPin, now, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := rec.Verify(tc.tok, tc.at)
			if tc.ok != (err == nil) {
				t.Fatalf("Verify = %v", err)
			}
			if err != nil && !errors.Is(err, v1.ErrUnauthorized) {
				t.Fatalf("%v does not wrap ErrUnauthorized", err)
			}
		})
	}
	if !rec.Expired(now.Add(time.Hour)) || rec.Expired(now) {
		t.Fatal("Expired disagrees with Verify")
	}
	t.Run("a zero TTL gets the default", func(t *testing.T) {
		_, r, err := NewJoinToken(ca.Pin(), 0, now)
		if err != nil || !r.Expires.Equal(now.Add(DefaultJoinTokenTTL)) {
			t.Fatalf("%v %v", r.Expires, err)
		}
	})
	t.Run("a malformed pin is refused", func(t *testing.T) {
		if _, _, err := NewJoinToken("short", time.Hour, now); err == nil {
			t.Fatal("accepted")
		}
	})
}

func TestPinnedClientTLS(t *testing.T) {
	ca, _ := newTestCA(t)
	other, _ := newTestCA(t)
	good, err := ca.IssueServer([]string{"localhost"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	leafOnly := good
	leafOnly.Certificate = leafOnly.Certificate[:1]
	// A server whose chain ends at another CA but carries our CA's
	// certificate too: the pin matches a certificate in the chain, yet
	// the leaf is not ours.
	foreign, _ := other.IssueServer([]string{"localhost"}, nil)
	foreign.Certificate = append(foreign.Certificate, ca.Certificate().Raw)
	for _, tc := range []struct {
		name string
		cert tls.Certificate
		pin  string
		host string
		ok   bool
	}{
		{"a server under the pinned CA is trusted", good, ca.Pin(), "localhost", true},
		{"another CA's pin is refused", good, other.Pin(), "localhost", false},
		{"a server that does not send the CA is refused", leafOnly, ca.Pin(), "localhost", false},
		{"a foreign leaf next to our CA certificate is refused", foreign, ca.Pin(), "localhost", false},
		{"a host name the certificate lacks is refused", good, ca.Pin(), "gantry.example.com", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := serveTLS(t, ServerTLS(nil, StaticCert(tc.cert)), http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				io.WriteString(w, "ok")
			}))
			cl := &http.Client{Transport: &http.Transport{TLSClientConfig: PinnedClientTLS(tc.pin, tc.host)}, Timeout: 10 * time.Second}
			defer cl.CloseIdleConnections()
			resp, err := cl.Get(url)
			if err == nil {
				resp.Body.Close()
			} else {
				t.Logf("refused: %v", err)
			}
			if tc.ok != (err == nil) {
				t.Fatalf("get: %v", err)
			}
		})
	}
}

// TestJoinFlow is the whole join over real TLS: an agent holding only the
// server address and a join token gets a node certificate and then calls
// the server as that node, on the same listener users use with tokens.
func TestJoinFlow(t *testing.T) {
	ca, dataDir := newTestCA(t)
	sc, err := ca.ServingCert(Dir(dataDir), "apiserver", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	tok, rec, err := NewJoinToken(ca.Pin(), time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	type joinReq struct {
		Node string `json:"node"`
		CSR  []byte `json:"csr"`
	}
	type joinResp struct {
		Cert []byte `json:"cert"`
		CA   []byte `json:"ca"`
	}
	var mu sync.Mutex
	records := map[string]JoinToken{rec.ID: rec}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/join", func(w http.ResponseWriter, r *http.Request) {
		bearer := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		jc, err := ParseJoinToken(bearer)
		mu.Lock()
		stored, found := records[jc.ID]
		mu.Unlock()
		if err != nil || !found || stored.Verify(bearer, time.Now()) != nil {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		var req joinReq
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		cert, err := ca.SignNodeCSR(req.CSR, req.Node)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		json.NewEncoder(w).Encode(joinResp{Cert: cert, CA: ca.CertPEM()})
	})
	mux.HandleFunc("GET /whoami", func(w http.ResponseWriter, r *http.Request) {
		if node, ok := NodeFromTLS(r.TLS); ok {
			io.WriteString(w, node)
			return
		}
		http.Error(w, "who are you", http.StatusUnauthorized)
	})
	url := serveTLS(t, ServerTLS(ca.Pool(), sc.GetCertificate), mux)

	// The agent's side.
	jc, err := ParseJoinToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := NewKey()
	csr, err := NodeCSR("edge-3", key)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(joinReq{Node: "edge-3", CSR: csr})
	join := func(t *testing.T, token string, body []byte) *http.Response {
		t.Helper()
		cl := &http.Client{Transport: &http.Transport{TLSClientConfig: PinnedClientTLS(jc.CAPin, "127.0.0.1")}, Timeout: 10 * time.Second}
		defer cl.CloseIdleConnections()
		req, _ := http.NewRequest(http.MethodPost, url+"/api/v1/join", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	t.Run("a wrong token gets no certificate", func(t *testing.T) {
		bad, _, _ := NewJoinToken(ca.Pin(), time.Hour, time.Now())
		resp := join(t, bad, body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	t.Run("a request for another node's name is refused", func(t *testing.T) {
		b, _ := json.Marshal(joinReq{Node: "edge-4", CSR: csr})
		resp := join(t, tok, b)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	resp := join(t, tok, body)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("join: %d %s", resp.StatusCode, b)
	}
	var jr joinResp
	if err := json.NewDecoder(resp.Body).Decode(&jr); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckPin(jr.CA, jc.CAPin); err != nil {
		t.Fatalf("the returned CA is not the pinned one: %v", err)
	}
	if _, err := CheckPin(jr.CA, strings.Repeat("a", 52)); err == nil {
		t.Fatal("CheckPin accepted a wrong pin")
	}
	agentDir := t.TempDir()
	keyPEM, _ := EncodeKey(key)
	if err := WriteKeyPair(agentDir, "node", jr.Cert, keyPEM); err != nil {
		t.Fatal(err)
	}
	cert, err := LoadKeyPair(agentDir, "node")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ClientTLS(jr.CA, &cert)
	if err != nil {
		t.Fatal(err)
	}
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
	defer cl.CloseIdleConnections()
	who, err := cl.Get(url + "/whoami")
	if err != nil {
		t.Fatal(err)
	}
	defer who.Body.Close()
	b, _ := io.ReadAll(who.Body)
	if who.StatusCode != http.StatusOK || string(b) != "edge-3" {
		t.Fatalf("whoami: %d %q", who.StatusCode, b)
	}
}
