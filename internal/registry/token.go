package registry

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Registry tokens are JWTs signed with HMAC-SHA256 (HS256) under a key
// derived from Config.TokenKey. The claim set follows the Docker token
// specification (an "access" list of {type, name, actions}), so the
// tokens read familiarly in a debugger, but only this registry issues and
// accepts them: the signature is checked with the one key, the algorithm
// is fixed and never taken from the token's header.

// tokenHeader is the fixed, pre-encoded JOSE header of every token.
var tokenHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

// scopeGrant is one resource a token grants actions on.
type scopeGrant struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

type claims struct {
	Issuer    string       `json:"iss"`
	Subject   string       `json:"sub"`
	Node      string       `json:"node,omitempty"`
	Audience  string       `json:"aud"`
	IssuedAt  int64        `json:"iat"`
	NotBefore int64        `json:"nbf"`
	Expires   int64        `json:"exp"`
	ID        string       `json:"jti"`
	Access    []scopeGrant `json:"access"`
	// Credential is the platform token the registry token was issued
	// for (its id, never its secret), checked again on every use.
	Credential string `json:"gantry_credential,omitempty"`
}

func (c *claims) identity() Identity {
	return Identity{User: c.Subject, Node: c.Node, Credential: c.Credential}
}

// allows reports whether the token grants action on the resource.
func (c *claims) allows(typ, name, action string) bool {
	for _, g := range c.Access {
		if g.Type == typ && g.Name == name && (slices.Contains(g.Actions, action) || slices.Contains(g.Actions, "*")) {
			return true
		}
	}
	return false
}

var (
	errTokenMalformed = errors.New("malformed registry token")
	errTokenSignature = errors.New("registry token signature does not verify")
	errTokenExpired   = errors.New("registry token has expired")
)

type signer struct {
	key      []byte
	issuer   string
	audience string
	now      func() time.Time
}

func (s *signer) sign(c *claims) (string, error) {
	if c.ID == "" {
		var id [12]byte
		if _, err := rand.Read(id[:]); err != nil {
			return "", err
		}
		c.ID = base64.RawURLEncoding.EncodeToString(id[:])
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	signingInput := tokenHeader + "." + base64.RawURLEncoding.EncodeToString(payload)
	return signingInput + "." + base64.RawURLEncoding.EncodeToString(s.mac(signingInput)), nil
}

func (s *signer) mac(input string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(input))
	return m.Sum(nil)
}

// isOurs tells a registry token from an opaque platform token, so that a
// Bearer header can carry either.
func isOurs(tok string) bool {
	return strings.HasPrefix(tok, tokenHeader+".") && strings.Count(tok, ".") == 2
}

func (s *signer) verify(tok string) (*claims, error) {
	if !isOurs(tok) {
		return nil, errTokenMalformed
	}
	i := strings.LastIndexByte(tok, '.')
	// Compared in its encoded form: the decoder skips newlines and
	// ignores stray low bits, so decoding first would accept many
	// spellings of one signature.
	want := base64.RawURLEncoding.EncodeToString(s.mac(tok[:i]))
	if !hmac.Equal([]byte(tok[i+1:]), []byte(want)) {
		return nil, errTokenSignature
	}
	payload, err := base64.RawURLEncoding.DecodeString(tok[len(tokenHeader)+1 : i])
	if err != nil {
		return nil, errTokenMalformed
	}
	var c claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, fmt.Errorf("%w: %v", errTokenMalformed, err)
	}
	now := s.now().Unix()
	if c.Issuer != s.issuer || c.Audience != s.audience {
		return nil, fmt.Errorf("%w: issued for %s/%s", errTokenMalformed, c.Issuer, c.Audience)
	}
	// One second of leeway on nbf: issuer and verifier share a clock, but
	// iat is truncated to whole seconds.
	if now >= c.Expires || now+1 < c.NotBefore {
		return nil, errTokenExpired
	}
	return &c, nil
}
