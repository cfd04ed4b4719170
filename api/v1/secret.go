package v1

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
)

// Secret holds sensitive values: database passwords, API keys, TLS keys.
// The store only ever holds them sealed (AES-256-GCM under a per-secret
// data key wrapped by the cluster master key); reads return key names
// only, and values are revealed through their own subresource to callers
// allowed to (secrets/reveal), or to the node of an instance that uses
// them.
type Secret struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta `json:"metadata"`
	// Data holds values in requests; it is never stored or returned.
	Data map[string][]byte `json:"data,omitempty"`
	// StringData is Data for values that are text, as manifests write
	// them; merged into Data on write.
	StringData map[string]string `json:"stringData,omitempty"`
	// Keys lists the secret's keys on reads.
	Keys []string `json:"keys,omitempty"`
	// Sealed is what the store holds.
	Sealed *SealedData `json:"sealed,omitempty"`
}

// GetMeta returns the Secret's metadata.
func (s *Secret) GetMeta() *ObjectMeta { return &s.Metadata }

// SealedData is a secret's values encrypted under a data key, itself
// wrapped by a master key identified by KeyID.
type SealedData struct {
	KeyID      string `json:"keyID"`
	WrappedKey []byte `json:"wrappedKey"`
	Nonce      []byte `json:"nonce"`
	Ciphertext []byte `json:"ciphertext"`
	// Keys are the names of the sealed values (not secret themselves), so
	// that reads can list them without opening the seal.
	Keys []string `json:"keys,omitempty"`
}

// Redacted is the secret as reads return it: key names, no values and no
// ciphertext.
func (s *Secret) Redacted() Object {
	c := &Secret{TypeMeta: s.TypeMeta, Metadata: s.Metadata}
	if s.Sealed != nil {
		c.Keys = append([]string(nil), s.Sealed.Keys...)
	} else {
		c.Keys = s.DataKeys()
	}
	return c
}

// DataKeys returns the keys of Data and StringData, sorted.
func (s *Secret) DataKeys() []string {
	seen := map[string]bool{}
	for k := range s.Data {
		seen[k] = true
	}
	for k := range s.StringData {
		seen[k] = true
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// MergedData returns Data with StringData folded in.
func (s *Secret) MergedData() map[string][]byte {
	out := make(map[string][]byte, len(s.Data)+len(s.StringData))
	for k, v := range s.Data {
		out[k] = v
	}
	for k, v := range s.StringData {
		out[k] = []byte(v)
	}
	return out
}

var secretKey = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// MaxSecretSize bounds a secret's size as SecretSize counts it. Stored,
// its values are base64 inside the sealed JSON and the sealed bytes
// base64 again (16/9 of their size), and its key names stand in the
// plaintext and in the list of keys: 768 KiB so counted stays within
// the store's 1.5 MiB per write, with room for the metadata.
const MaxSecretSize = 768 << 10

// SecretSize is what MaxSecretSize bounds: the values, and each key name
// twice with 16 bytes of framing.
func SecretSize(data map[string][]byte, stringData map[string]string) int {
	size := 0
	for k, v := range data {
		size += len(v) + 2*len(k) + 16
	}
	for k, v := range stringData {
		if _, dup := data[k]; !dup {
			size += 2*len(k) + 16
		}
		size += len(v)
	}
	return size
}

// Validate checks a Secret.
func (s *Secret) Validate() FieldErrors {
	var errs FieldErrors
	size := 0
	for _, k := range s.DataKeys() {
		if len(k) > 253 || !secretKey.MatchString(k) || k == "." || k == ".." {
			errs.add(fmt.Sprintf("data[%s]", k), "keys are letters, digits, '.', '_' and '-'")
		}
	}
	// Labels and annotations are stored beside the sealed values, in
	// the same write, as JSON (where <, > and & take six bytes each).
	for _, m := range []map[string]string{s.Metadata.Labels, s.Metadata.Annotations} {
		if b, err := json.Marshal(m); err == nil && len(m) > 0 {
			size += len(b)
		}
	}
	if size += SecretSize(s.Data, s.StringData); size > MaxSecretSize {
		errs.add("data", "values, key names, labels and annotations come to %d bytes (each key name counts twice, plus 16); the limit is %d (768 KiB): keep larger data in the image", size, MaxSecretSize)
	}
	return errs
}

func init() {
	Register(&KindInfo{Kind: "Secret", Plural: "secrets", Aliases: []string{"sec"}, Namespaced: true, New: func() Object { return &Secret{} }})
}
