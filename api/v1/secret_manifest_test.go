package v1

import (
	"strings"
	"testing"
)

// A Secret as reads return it (key names, no values) is refused as a
// manifest: before, the decoder dropped the key names and an apply of
// `gantry get secret NAME -o yaml` stored the secret with no values.
func TestSecretReadBackIsNoManifest(t *testing.T) {
	_, err := DecodeManifest([]byte("kind: Secret\napiVersion: v1\nmetadata: {name: db, namespace: default}\nkeys: [password, user]\n"))
	if err == nil || !strings.Contains(err.Error(), "keys:") {
		t.Errorf("a secret with keys and no values: %v; want it refused", err)
	}
	for _, doc := range []string{
		"kind: Secret\nname: db\nkeys: [password]\nstringData: {password: x}\n",
		"kind: Secret\nname: db\nstringData: {password: x}\n",
		"kind: Secret\nname: db\ndata: {password: aHVudGVyMg==}\n",
	} {
		if _, err := DecodeManifest([]byte(doc)); err != nil {
			t.Errorf("%q: %v", doc, err)
		}
	}
}

// Annotations count toward a Secret's size as stored, JSON-escaped: a
// value of < and > takes six bytes a character there.
func TestSecretSizeCountsAnnotationsAsStored(t *testing.T) {
	s := &Secret{Metadata: ObjectMeta{Name: "s", Annotations: map[string]string{"a": strings.Repeat("<", MaxSecretSize/6)}}}
	if errs := s.Validate(); len(errs) != 1 || errs[0].Field != "data" {
		t.Fatalf("a Secret whose annotation is %d bytes raw, about %d as JSON: %v; want refused at data", MaxSecretSize/6, MaxSecretSize, errs)
	}
}
