package secrets

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
)

// SealedData is the stored form of a Secret's values. It is plain JSON
// (byte slices as base64) so the API type can embed the same shape.
type SealedData struct {
	// KeyID names the master key that wrapped the data key.
	KeyID string `json:"keyID"`
	// WrappedKey is the data key sealed by the master key: a 12-byte GCM
	// nonce followed by the ciphertext and tag.
	WrappedKey []byte `json:"wrappedKey"`
	// Nonce is the GCM nonce the values were sealed with.
	Nonce []byte `json:"nonce"`
	// Ciphertext is the sealed values (a JSON object of base64 strings
	// before sealing), GCM tag included.
	Ciphertext []byte `json:"ciphertext"`
}

const (
	nonceSize   = 12
	tagSize     = 16
	wrappedSize = nonceSize + KeySize + tagSize
)

var (
	// ErrUnknownKey is returned by Open for a secret sealed with a master
	// key the keyring does not hold.
	ErrUnknownKey = errors.New("sealed with a master key this server does not have")
	// ErrCorrupt is returned by Open for a sealed secret that fails
	// authentication: damaged, tampered with, or copied from another
	// secret.
	ErrCorrupt = errors.New("sealed data does not authenticate (damaged, tampered with, or copied from another secret)")
)

// Codec seals and opens secret values with the keys of a keyring. It is
// safe for concurrent use.
type Codec struct {
	kr *Keyring

	// fence orders SealAndWrite against a rotation's switch to a new
	// master key: a rotation waits for every seal-and-store in flight to
	// finish, so none of them can store a secret under the old key after
	// the rotation has looked for such secrets.
	fence sync.RWMutex
	// rotating serializes rotations.
	rotating sync.Mutex
}

// NewCodec returns a codec over kr.
func NewCodec(kr *Keyring) *Codec { return &Codec{kr: kr} }

// Keyring returns the codec's keyring.
func (c *Codec) Keyring() *Keyring { return c.kr }

// Seal encrypts data for the secret ns/name under a fresh data key wrapped
// by the current master key. A caller that stores the result must use
// SealAndWrite instead, so that a rotation running at the same time cannot
// retire the key between the seal and the store.
func (c *Codec) Seal(ns, name string, data map[string][]byte) (*SealedData, error) {
	return seal(c.kr.current(), ns, name, data)
}

// SealAndWrite seals data and hands the result to write, which stores it.
// A rotation does not switch master keys while write runs. write must not
// call SealAndWrite itself.
func (c *Codec) SealAndWrite(ns, name string, data map[string][]byte, write func(*SealedData) error) error {
	c.fence.RLock()
	defer c.fence.RUnlock()
	s, err := c.Seal(ns, name, data)
	if err != nil {
		return err
	}
	return write(s)
}

// Open decrypts a sealed secret, which must have been sealed for ns/name.
// It returns a non-nil map.
func (c *Codec) Open(ns, name string, s *SealedData) (map[string][]byte, error) {
	if s == nil {
		return nil, fmt.Errorf("open secret %s/%s: %w: no sealed data", ns, name, ErrCorrupt)
	}
	k, ok := c.kr.lookup(s.KeyID)
	if !ok {
		return nil, fmt.Errorf("open secret %s/%s: %w (key id %q; this server has %v)", ns, name, ErrUnknownKey, s.KeyID, c.kr.IDs())
	}
	data, err := open(k, ns, name, s)
	if err != nil {
		return nil, fmt.Errorf("open secret %s/%s: %w", ns, name, err)
	}
	return data, nil
}

func seal(k masterKey, ns, name string, data map[string][]byte) (*SealedData, error) {
	pt, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("seal secret %s/%s: %w", ns, name, err)
	}
	defer clear(pt)

	// 12 bytes of data-key nonce, 12 of wrap nonce, 32 of data key.
	var buf [nonceSize + nonceSize + KeySize]byte
	if _, err := rand.Read(buf[:]); err != nil {
		return nil, fmt.Errorf("seal secret %s/%s: random: %w", ns, name, err)
	}
	defer clear(buf[:])
	nonce, wrapNonce, dk := buf[:nonceSize], buf[nonceSize:2*nonceSize], buf[2*nonceSize:]

	dataAEAD, err := newGCM(dk)
	if err != nil {
		return nil, fmt.Errorf("seal secret %s/%s: %w", ns, name, err)
	}
	out := &SealedData{
		KeyID:      k.id,
		Nonce:      append([]byte(nil), nonce...),
		Ciphertext: dataAEAD.Seal(nil, nonce, pt, dataAAD(ns, name)),
	}
	wrapped := make([]byte, 0, wrappedSize)
	wrapped = append(wrapped, wrapNonce...)
	out.WrappedKey = k.aead.Seal(wrapped, wrapNonce, dk, wrapAAD(k.id, ns, name))
	return out, nil
}

// open authenticates and decrypts s with k, whatever key ID s names: the
// tests use it to show that a retired key cannot open anything.
func open(k masterKey, ns, name string, s *SealedData) (map[string][]byte, error) {
	if len(s.WrappedKey) != wrappedSize || len(s.Nonce) != nonceSize || len(s.Ciphertext) < tagSize {
		return nil, fmt.Errorf("%w: malformed (wrapped key %d bytes, nonce %d, ciphertext %d)", ErrCorrupt, len(s.WrappedKey), len(s.Nonce), len(s.Ciphertext))
	}
	dk, err := k.aead.Open(nil, s.WrappedKey[:nonceSize], s.WrappedKey[nonceSize:], wrapAAD(s.KeyID, ns, name))
	if err != nil {
		return nil, ErrCorrupt
	}
	defer clear(dk)
	dataAEAD, err := newGCM(dk)
	if err != nil {
		return nil, err
	}
	pt, err := dataAEAD.Open(nil, s.Nonce, s.Ciphertext, dataAAD(ns, name))
	if err != nil {
		return nil, ErrCorrupt
	}
	defer clear(pt)
	var data map[string][]byte
	if err := json.Unmarshal(pt, &data); err != nil {
		// Authenticated but not ours: only a bug or a key compromise
		// gets here.
		return nil, fmt.Errorf("%w: plaintext is not a secret's values", ErrCorrupt)
	}
	if data == nil {
		data = map[string][]byte{}
	}
	return data, nil
}

// dataAAD binds sealed values to their secret. Fields are length-prefixed
// so that no two (namespace, name) pairs encode alike.
func dataAAD(ns, name string) []byte {
	return aad("gantry secret values v1", ns, name)
}

// wrapAAD binds a wrapped data key to its secret and to the master key ID
// recorded next to it.
func wrapAAD(keyID, ns, name string) []byte {
	return aad("gantry secret data key v1", keyID, ns, name)
}

func aad(fields ...string) []byte {
	var b []byte
	for _, f := range fields {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}
