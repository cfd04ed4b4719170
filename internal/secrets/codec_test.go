package secrets

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"testing"
)

// newTestCodec returns a codec over an in-memory keyring of one new key,
// and that key.
func newTestCodec(t testing.TB) (*Codec, []byte) {
	t.Helper()
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	kr, err := NewKeyring(k)
	if err != nil {
		t.Fatal(err)
	}
	return NewCodec(kr), k
}

func mustSeal(t testing.TB, c *Codec, ns, name string, data map[string][]byte) *SealedData {
	t.Helper()
	s, err := c.Seal(ns, name, data)
	if err != nil {
		t.Fatalf("seal %s/%s: %v", ns, name, err)
	}
	return s
}

func TestSealThenOpenReturnsTheValues(t *testing.T) {
	c, _ := newTestCodec(t)
	big := bytes.Repeat([]byte{0, 1, 2, 0xff}, 64<<10)
	for _, tc := range []struct {
		name string
		data map[string][]byte
	}{
		{"an empty secret opens to an empty map", map[string][]byte{}},
		{"a nil map opens to an empty map", nil},
		{"one text value", map[string][]byte{"password": []byte("hunter2")}},
		{"binary values and empty values", map[string][]byte{"tls.key": {0, 0xfe, 0x80, '\n'}, "empty": {}}},
		{"a 256 KiB value", map[string][]byte{"blob": big}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := mustSeal(t, c, "team-a", "db", tc.data)
			got, err := c.Open("team-a", "db", s)
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			if got == nil {
				t.Fatal("open returned a nil map")
			}
			if len(got) != len(tc.data) {
				t.Fatalf("got %d keys, want %d", len(got), len(tc.data))
			}
			for k, v := range tc.data {
				if !bytes.Equal(got[k], v) {
					t.Errorf("value of %q differs after the round trip", k)
				}
			}
		})
	}
}

func TestOpenRefusesWhatWasNotSealedForThisSecret(t *testing.T) {
	c, _ := newTestCodec(t)
	other, _ := newTestCodec(t)
	data := map[string][]byte{"token": []byte("s3cr3t")}
	flip := func(b []byte, i int) []byte {
		b = bytes.Clone(b)
		b[i%len(b)] ^= 0x01
		return b
	}
	for _, tc := range []struct {
		name     string
		ns, n    string
		mutate   func(s *SealedData)
		wantKind error
	}{
		{"a flipped ciphertext byte", "a", "db", func(s *SealedData) { s.Ciphertext = flip(s.Ciphertext, 3) }, ErrCorrupt},
		{"a flipped tag byte", "a", "db", func(s *SealedData) { s.Ciphertext = flip(s.Ciphertext, len(s.Ciphertext)-1) }, ErrCorrupt},
		{"a truncated ciphertext", "a", "db", func(s *SealedData) { s.Ciphertext = s.Ciphertext[:len(s.Ciphertext)-1] }, ErrCorrupt},
		{"a flipped wrapped key byte", "a", "db", func(s *SealedData) { s.WrappedKey = flip(s.WrappedKey, 20) }, ErrCorrupt},
		{"a flipped wrap nonce byte", "a", "db", func(s *SealedData) { s.WrappedKey = flip(s.WrappedKey, 0) }, ErrCorrupt},
		{"a flipped data nonce byte", "a", "db", func(s *SealedData) { s.Nonce = flip(s.Nonce, 5) }, ErrCorrupt},
		{"a short nonce", "a", "db", func(s *SealedData) { s.Nonce = s.Nonce[:8] }, ErrCorrupt},
		{"blob opened as another secret's name", "a", "db2", func(*SealedData) {}, ErrCorrupt},
		{"blob opened in another namespace", "b", "db", func(*SealedData) {}, ErrCorrupt},
		{"namespace and name split differently", "ad", "b", func(*SealedData) {}, ErrCorrupt},
		{"a key ID naming a key this server lacks", "a", "db", func(s *SealedData) { s.KeyID = other.Keyring().CurrentID() }, ErrUnknownKey},
		{"an empty key ID", "a", "db", func(s *SealedData) { s.KeyID = "" }, ErrUnknownKey},
		{"values of one secret under the data key of another", "a", "db", func(s *SealedData) {
			o := mustSeal(t, c, "a", "db", map[string][]byte{"token": []byte("other")})
			s.WrappedKey = o.WrappedKey
		}, ErrCorrupt},
	} {
		t.Run(tc.name+" is refused", func(t *testing.T) {
			s := mustSeal(t, c, "a", "db", data)
			tc.mutate(s)
			got, err := c.Open(tc.ns, tc.n, s)
			if err == nil {
				t.Fatalf("open succeeded with %d values", len(got))
			}
			if !errors.Is(err, tc.wantKind) {
				t.Fatalf("error %v does not wrap %v", err, tc.wantKind)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Fatalf("error leaks the value: %v", err)
			}
		})
	}
	t.Run("nil sealed data is refused", func(t *testing.T) {
		if _, err := c.Open("a", "db", nil); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("got %v, want ErrCorrupt", err)
		}
	})
	t.Run("a key ID relabelled to another key the server has is refused", func(t *testing.T) {
		// Both keys are in the ring, so the lookup succeeds: only the key
		// ID bound into the wrap's additional data catches the swap.
		k2, _ := GenerateKey()
		k1 := mustKeyOf(t, c)
		kr, err := NewKeyring(k2, k1)
		if err != nil {
			t.Fatal(err)
		}
		s := mustSeal(t, c, "a", "db", data)
		s.KeyID = KeyID(k2)
		if _, err := NewCodec(kr).Open("a", "db", s); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("got %v, want ErrCorrupt", err)
		}
	})
}

func mustKeyOf(t *testing.T, c *Codec) []byte {
	t.Helper()
	return bytes.Clone(c.Keyring().current().raw)
}

func TestSealedJSONCarriesNoPlaintext(t *testing.T) {
	c, master := newTestCodec(t)
	values := map[string][]byte{
		"password": []byte("correct-horse-battery-staple"),
		"api-key":  []byte("AKIAEXAMPLEPLAINTEXT0001"),
		"cert":     []byte("-----BEGIN PRIVATE KEY-----MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"),
	}
	s := mustSeal(t, c, "prod", "creds", values)
	blob, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	// What a leak would look like: the value itself, or the value as
	// encoding/json or a hex dump renders bytes.
	for k, v := range values {
		for _, form := range [][]byte{v, []byte(base64.StdEncoding.EncodeToString(v)), []byte(hex.EncodeToString(v))} {
			if bytes.Contains(blob, form) {
				t.Errorf("sealed JSON contains the value of %q (as %q)", k, form)
			}
		}
	}
	for _, form := range []string{string(master), base64.StdEncoding.EncodeToString(master), hex.EncodeToString(master)} {
		if bytes.Contains(blob, []byte(form)) {
			t.Error("sealed JSON contains the master key")
		}
	}
	// The keys of the map are values too: a secret's key names can say
	// what it holds.
	if bytes.Contains(blob, []byte("password")) {
		t.Error("sealed JSON contains a key name")
	}

	var back SealedData
	if err := json.Unmarshal(blob, &back); err != nil {
		t.Fatal(err)
	}
	got, err := c.Open("prod", "creds", &back)
	if err != nil {
		t.Fatalf("open after a JSON round trip: %v", err)
	}
	if !maps.EqualFunc(got, values, bytes.Equal) {
		t.Fatal("values differ after a JSON round trip")
	}
}

func TestEverySealDrawsAFreshDataKeyAndNonce(t *testing.T) {
	c, _ := newTestCodec(t)
	data := map[string][]byte{"k": []byte("same value")}
	seen := map[string]bool{}
	for range 50 {
		s := mustSeal(t, c, "a", "b", data)
		for _, part := range [][]byte{s.WrappedKey, s.Nonce, s.Ciphertext, s.WrappedKey[:nonceSize]} {
			if seen[string(part)] {
				t.Fatal("two seals of the same values share a wrapped key, nonce or ciphertext")
			}
			seen[string(part)] = true
		}
	}
}

func TestSealAndWriteStoresWhatSealMakes(t *testing.T) {
	c, _ := newTestCodec(t)
	var stored *SealedData
	err := c.SealAndWrite("a", "b", map[string][]byte{"k": []byte("v")}, func(s *SealedData) error {
		stored = s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Open("a", "b", stored)
	if err != nil || string(got["k"]) != "v" {
		t.Fatalf("open stored: %v %q", err, got["k"])
	}
	want := errors.New("store down")
	if err := c.SealAndWrite("a", "b", nil, func(*SealedData) error { return want }); !errors.Is(err, want) {
		t.Fatalf("write error not returned: %v", err)
	}
}

func BenchmarkSeal(b *testing.B) {
	c, _ := newTestCodec(b)
	data := map[string][]byte{"user": []byte("admin"), "password": bytes.Repeat([]byte("x"), 64)}
	for b.Loop() {
		if _, err := c.Seal("ns", "name", data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	c, _ := newTestCodec(b)
	s := mustSeal(b, c, "ns", "name", map[string][]byte{"user": []byte("admin"), "password": bytes.Repeat([]byte("x"), 64)})
	for b.Loop() {
		if _, err := c.Open("ns", "name", s); err != nil {
			b.Fatal(err)
		}
	}
}
