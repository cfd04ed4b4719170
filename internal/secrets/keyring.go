package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// EnvMasterKey names the environment variable that, when set, supplies the
// master keys instead of the key file: one or more base64 keys separated by
// commas or white space, the first of which seals.
const EnvMasterKey = "GANTRY_MASTER_KEY"

// KeySize is the length of master and data keys: AES-256.
const KeySize = 32

// ErrInsecureKeyFile is returned for a key file that is not a regular file
// or that its group or other users could read or write.
var ErrInsecureKeyFile = errors.New("insecure master key file")

// KeyFile is where the master key file lives in a data directory.
func KeyFile(dataDir string) string { return filepath.Join(dataDir, "secrets", "master.key") }

// KeyID names a master key without revealing it: the first 8 bytes of a
// domain-separated SHA-256, hex-encoded. It is a pure function of the key,
// so a key moved between the file and the environment keeps its ID.
func KeyID(key []byte) string {
	h := sha256.New()
	h.Write([]byte("gantry master key id\x00"))
	h.Write(key)
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// GenerateKey returns a new random master key.
func GenerateKey() ([]byte, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("generate master key: %w", err)
	}
	return k, nil
}

// EncodeKey renders a key the way the key file and GANTRY_MASTER_KEY hold
// it (standard base64).
func EncodeKey(key []byte) string { return base64.StdEncoding.EncodeToString(key) }

type masterKey struct {
	id   string
	raw  []byte
	aead cipher.AEAD
}

func newMasterKey(raw []byte) (masterKey, error) {
	if len(raw) != KeySize {
		return masterKey{}, fmt.Errorf("master key must be %d bytes, got %d", KeySize, len(raw))
	}
	raw = append([]byte(nil), raw...)
	aead, err := newGCM(raw)
	if err != nil {
		return masterKey{}, err
	}
	return masterKey{id: KeyID(raw), raw: raw, aead: aead}, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	return cipher.NewGCM(b)
}

// Keyring holds the master keys: the current one, which seals, and the
// previous ones, kept only while a rotation moves secrets off them. It is
// safe for concurrent use.
type Keyring struct {
	mu   sync.RWMutex
	keys []masterKey // keys[0] seals

	// path is the key file the keyring is persisted to; empty for keys
	// from the environment or from memory.
	path    string
	fromEnv bool
}

// NewKeyring makes an in-memory keyring; the first key seals. Rotation of
// an in-memory keyring makes its new key in memory only.
func NewKeyring(keys ...[]byte) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("keyring needs at least one master key")
	}
	kr := &Keyring{}
	for i, raw := range keys {
		k, err := newMasterKey(raw)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		if _, dup := kr.lookupLocked(k.id); dup {
			continue
		}
		kr.keys = append(kr.keys, k)
	}
	return kr, nil
}

// LoadKeyring returns the keyring of a server: the keys in
// GANTRY_MASTER_KEY when it is set, else the key file in dataDir, made
// with a new random key if it does not exist yet.
func LoadKeyring(dataDir string) (*Keyring, error) {
	if v, ok := os.LookupEnv(EnvMasterKey); ok && strings.TrimSpace(v) != "" {
		keys, err := ParseKeys(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvMasterKey, err)
		}
		kr, err := NewKeyring(keys...)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvMasterKey, err)
		}
		kr.fromEnv = true
		return kr, nil
	}
	return OpenKeyFile(KeyFile(dataDir))
}

// ParseKeys decodes a list of base64 master keys separated by commas or
// white space, as GANTRY_MASTER_KEY and the key file hold them.
func ParseKeys(s string) ([][]byte, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r'
	})
	if len(fields) == 0 {
		return nil, errors.New("no master key given")
	}
	keys := make([][]byte, 0, len(fields))
	for i, f := range fields {
		k, err := decodeKey(f)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func decodeKey(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil {
			if len(k) != KeySize {
				return nil, fmt.Errorf("decodes to %d bytes, want %d (make one with: head -c 32 /dev/urandom | base64)", len(k), KeySize)
			}
			return k, nil
		}
	}
	return nil, errors.New("is not base64 (make one with: head -c 32 /dev/urandom | base64)")
}

// OpenKeyFile loads the keyring persisted at path, creating the file with
// one new random key if it does not exist. The file holds one base64 key
// per line, the first of which seals; a file of exactly 32 bytes is read as
// one raw key. A file that group or others may access is refused.
func OpenKeyFile(path string) (*Keyring, error) {
	keys, err := readKeyFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if to, lerr := os.Readlink(path); lerr == nil {
			// A key kept elsewhere (a volume not mounted yet): making a
			// new one would seal nothing the cluster has.
			return nil, fmt.Errorf("master key file %s links to %s, which does not exist (is its volume mounted?): %w", path, to, err)
		}
		keys, err = createKeyFile(path)
	}
	if err != nil {
		return nil, err
	}
	kr, err := NewKeyring(keys...)
	if err != nil {
		return nil, fmt.Errorf("master key file %s: %w", path, err)
	}
	kr.path = path
	return kr, nil
}

func readKeyFile(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Check the mode of the file actually opened, not of the path, so a
	// swap between the check and the read cannot slip a file past it.
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("master key file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("master key file %s: %w: not a regular file", path, ErrInsecureKeyFile)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("master key file %s: %w: mode %04o lets group or others access it; run chmod 600 %s", path, ErrInsecureKeyFile, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("read master key file %s: %w", path, err)
	}
	if len(b) == KeySize {
		return [][]byte{b}, nil
	}
	keys, err := ParseKeys(string(b))
	if err != nil {
		return nil, fmt.Errorf("master key file %s: %w", path, err)
	}
	return keys, nil
}

// createKeyFile makes the key file with a new key. The file is written in
// full under a temporary name and then hard-linked into place, which fails
// if the file appeared meanwhile: a reader never sees a half-written key,
// and two starting processes agree on one key.
func createKeyFile(path string) ([][]byte, error) {
	k, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("master key directory: %w", err)
	}
	tmp, err := writeTemp(dir, [][]byte{k})
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return readKeyFile(path)
		}
		return nil, fmt.Errorf("create master key file %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return nil, err
	}
	return [][]byte{k}, nil
}

// writeTemp writes keys to a new 0600 file in dir, synced to disk, and
// returns its name.
func writeTemp(dir string, keys [][]byte) (string, error) {
	f, err := os.CreateTemp(dir, ".master.key-*")
	if err != nil {
		return "", fmt.Errorf("write master key file: %w", err)
	}
	var sb strings.Builder
	for _, k := range keys {
		sb.WriteString(EncodeKey(k))
		sb.WriteByte('\n')
	}
	_, err = f.WriteString(sb.String())
	if err == nil {
		err = f.Chmod(0o600)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("write master key file: %w", err)
	}
	return f.Name(), nil
}

// replaceKeyFile atomically replaces the key file with keys. A key file
// that is a symbolic link (to a volume of its own) stays one: its target
// is replaced, so the new key lands where the operator keeps and backs up
// the key, not in a file of the data directory over the link.
func replaceKeyFile(path string, keys [][]byte) error {
	path, err := filepath.EvalSymlinks(path)
	if err != nil {
		return fmt.Errorf("replace master key file: %w", err)
	}
	dir := filepath.Dir(path)
	tmp, err := writeTemp(dir, keys)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("replace master key file %s: %w", path, err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// CurrentID is the ID of the key that seals.
func (kr *Keyring) CurrentID() string {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	return kr.keys[0].id
}

// IDs lists the IDs of every key, the current one first.
func (kr *Keyring) IDs() []string {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	ids := make([]string, len(kr.keys))
	for i, k := range kr.keys {
		ids[i] = k.id
	}
	return ids
}

// Path is the key file the keyring is persisted to, or "" for keys from
// the environment or from memory.
func (kr *Keyring) Path() string { return kr.path }

// FromEnv reports whether the keys came from GANTRY_MASTER_KEY, in which
// case a rotation cannot add or retire keys by itself: the operator edits
// the variable.
func (kr *Keyring) FromEnv() bool { return kr.fromEnv }

func (kr *Keyring) current() masterKey {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	return kr.keys[0]
}

func (kr *Keyring) lookup(id string) (masterKey, bool) {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	return kr.lookupLocked(id)
}

func (kr *Keyring) lookupLocked(id string) (masterKey, bool) {
	for _, k := range kr.keys {
		if k.id == id {
			return k, true
		}
	}
	return masterKey{}, false
}

// promote makes raw the sealing key, keeping the others for opening. The
// key file is rewritten first, so that no secret is ever sealed with a key
// that a crash could lose.
func (kr *Keyring) promote(raw []byte) error {
	k, err := newMasterKey(raw)
	if err != nil {
		return err
	}
	kr.mu.Lock()
	defer kr.mu.Unlock()
	keys := []masterKey{k}
	for _, old := range kr.keys {
		if old.id != k.id {
			keys = append(keys, old)
		}
	}
	if err := kr.persistLocked(keys); err != nil {
		return err
	}
	kr.keys = keys
	return nil
}

// retire drops every key but the current one and returns the IDs dropped.
func (kr *Keyring) retire() ([]string, error) {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	if len(kr.keys) == 1 {
		return nil, nil
	}
	keep := kr.keys[:1:1]
	if err := kr.persistLocked(keep); err != nil {
		return nil, err
	}
	var ids []string
	for _, k := range kr.keys[1:] {
		ids = append(ids, k.id)
		clear(k.raw)
	}
	kr.keys = keep
	return ids, nil
}

func (kr *Keyring) persistLocked(keys []masterKey) error {
	if kr.path == "" {
		return nil
	}
	raws := make([][]byte, len(keys))
	for i, k := range keys {
		raws[i] = k.raw
	}
	return replaceKeyFile(kr.path, raws)
}
