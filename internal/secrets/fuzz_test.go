package secrets

import (
	"bytes"
	"encoding/json"
	"testing"
)

// fuzzKey is fixed so that the corpus stays meaningful across runs.
var fuzzKey = bytes.Repeat([]byte{0x5a}, KeySize)

// fuzzValid is {"k": "v"} sealed for ns/name under fuzzKey. It is a
// constant because every fuzz worker process runs the setup again: a blob
// sealed at setup would differ between the coordinator and the workers.
const fuzzValid = `{"keyID":"0a625cc9161b8ffe","wrappedKey":"Qx3iQB/nH63m42yg3HOpALgPdgGsXcIE4dvRcv3oaelvMGAo/6Iw/4QHrxmkOoDBwVl+h4blwd/Y76Ro","nonce":"pEVcLzHtzplsT+CH","ciphertext":"iQfxyqm+j96MqDRTV2qFV0JKVOTrwElYWvb/tQ=="}`

// fuzzCodec returns a codec over fuzzKey and the valid blob, checked to
// open.
func fuzzCodec(f *testing.F) (*Codec, *SealedData) {
	f.Helper()
	kr, err := NewKeyring(fuzzKey)
	if err != nil {
		f.Fatal(err)
	}
	c := NewCodec(kr)
	var valid SealedData
	if err := json.Unmarshal([]byte(fuzzValid), &valid); err != nil {
		f.Fatal(err)
	}
	if got, err := c.Open("ns", "name", &valid); err != nil || string(got["k"]) != "v" {
		f.Fatalf("the fixed valid blob does not open: %v", err)
	}
	return c, &valid
}

// FuzzOpen feeds Open arbitrary sealed data. It must never panic, and it
// must never accept anything but the exact blob Seal made for that secret:
// acceptance of a mutated blob would be a forgery.
func FuzzOpen(f *testing.F) {
	c, valid := fuzzCodec(f)
	f.Add(valid.KeyID, valid.WrappedKey, valid.Nonce, valid.Ciphertext, "ns", "name")
	f.Add(valid.KeyID, valid.WrappedKey, valid.Nonce, valid.Ciphertext, "ns", "nam")
	f.Add(valid.KeyID, valid.WrappedKey[:10], valid.Nonce, valid.Ciphertext, "ns", "name")
	f.Add("", []byte{}, []byte{}, []byte{}, "", "")
	f.Add(valid.KeyID, make([]byte, wrappedSize), make([]byte, nonceSize), make([]byte, tagSize), "ns", "name")
	f.Fuzz(func(t *testing.T, keyID string, wrapped, nonce, ct []byte, ns, name string) {
		s := &SealedData{KeyID: keyID, WrappedKey: wrapped, Nonce: nonce, Ciphertext: ct}
		got, err := c.Open(ns, name, s)
		if err != nil {
			if got != nil {
				t.Fatal("values returned with an error")
			}
			return
		}
		same := keyID == valid.KeyID && bytes.Equal(wrapped, valid.WrappedKey) && bytes.Equal(nonce, valid.Nonce) &&
			bytes.Equal(ct, valid.Ciphertext) && ns == "ns" && name == "name"
		if !same {
			t.Fatalf("opened a blob Seal did not make: %+v for %q/%q", s, ns, name)
		}
		if string(got["k"]) != "v" || len(got) != 1 {
			t.Fatalf("valid blob opened to %v", got)
		}
	})
}

// FuzzOpenJSON goes through the JSON decoding the store does first.
func FuzzOpenJSON(f *testing.F) {
	c, valid := fuzzCodec(f)
	f.Add([]byte(fuzzValid))
	f.Add([]byte(`{"keyID":"x","wrappedKey":"AAAA","nonce":null,"ciphertext":""}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s *SealedData
		if json.Unmarshal(b, &s) != nil {
			return
		}
		got, err := c.Open("ns", "name", s)
		if err != nil {
			return
		}
		if s.KeyID != valid.KeyID || !bytes.Equal(s.WrappedKey, valid.WrappedKey) || !bytes.Equal(s.Nonce, valid.Nonce) || !bytes.Equal(s.Ciphertext, valid.Ciphertext) {
			t.Fatalf("opened a blob Seal did not make: %+v", s)
		}
		if string(got["k"]) != "v" {
			t.Fatalf("valid blob opened to %v", got)
		}
	})
}
