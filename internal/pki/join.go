package pki

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// DefaultJoinTokenTTL is how long a join token is valid when no TTL is
// given.
const DefaultJoinTokenTTL = 24 * time.Hour

const joinPrefix = "gjt_"

// JoinToken is what the server stores of a join token: never the secret,
// only its SHA-256. The secret has 256 random bits, so a fast hash is
// enough: there is nothing to brute-force.
type JoinToken struct {
	// ID names the token; it is the part of the token a lookup uses.
	ID string `json:"id"`
	// Hash is the hex SHA-256 of the secret.
	Hash    string    `json:"hash"`
	Expires time.Time `json:"expires"`
}

// JoinCredentials are the parts of a join token as an agent holds it.
type JoinCredentials struct {
	ID     string
	Secret string
	// CAPin is the pin of the cluster CA (see Pin): the agent trusts the
	// server only if its chain ends at a CA with this pin.
	CAPin string
}

// ErrInvalidJoinToken is returned for unknown, expired or malformed join
// tokens; the message does not say which, to give a guesser nothing.
var ErrInvalidJoinToken = fmt.Errorf("%w: invalid or expired join token", v1.ErrUnauthorized)

// NewJoinToken makes a join token for the CA with the given pin, valid for
// ttl (DefaultJoinTokenTTL if zero) from now. It returns the token to show
// once, "gjt_<id>_<secret>_<ca pin>", and the record to store.
func NewJoinToken(caPin string, ttl time.Duration, now time.Time) (token string, rec JoinToken, err error) {
	if len(caPin) != 52 {
		return "", JoinToken{}, fmt.Errorf("CA pin %q is malformed", caPin)
	}
	if ttl <= 0 {
		ttl = DefaultJoinTokenTTL
	}
	var idb [5]byte
	var sec [32]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return "", JoinToken{}, err
	}
	if _, err := rand.Read(sec[:]); err != nil {
		return "", JoinToken{}, err
	}
	id := strings.ToLower(b32.EncodeToString(idb[:]))
	secret := strings.ToLower(b32.EncodeToString(sec[:]))
	rec = JoinToken{ID: id, Hash: hashJoinSecret(secret), Expires: now.Add(ttl).UTC()}
	return joinPrefix + id + "_" + secret + "_" + caPin, rec, nil
}

func hashJoinSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// ParseJoinToken splits a join token into its parts.
func ParseJoinToken(tok string) (JoinCredentials, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(tok), joinPrefix)
	if !ok {
		return JoinCredentials{}, fmt.Errorf("%w (expected gjt_…)", ErrInvalidJoinToken)
	}
	parts := strings.Split(rest, "_")
	if len(parts) != 3 || len(parts[0]) != 8 || len(parts[1]) != 52 || len(parts[2]) != 52 {
		return JoinCredentials{}, ErrInvalidJoinToken
	}
	for _, p := range parts {
		if _, err := b32.DecodeString(strings.ToUpper(p)); err != nil {
			return JoinCredentials{}, ErrInvalidJoinToken
		}
	}
	return JoinCredentials{ID: parts[0], Secret: parts[1], CAPin: parts[2]}, nil
}

// Verify checks a presented token against the stored record: same ID,
// same secret (compared in constant time), not expired.
func (r JoinToken) Verify(tok string, now time.Time) error {
	jc, err := ParseJoinToken(tok)
	if err != nil {
		return err
	}
	ok := subtle.ConstantTimeCompare([]byte(hashJoinSecret(jc.Secret)), []byte(r.Hash)) == 1
	if !ok || jc.ID != r.ID || !now.Before(r.Expires) {
		return ErrInvalidJoinToken
	}
	return nil
}

// Expired reports whether the token can no longer be used at now, so the
// server can delete it.
func (r JoinToken) Expired(now time.Time) bool { return !now.Before(r.Expires) }
