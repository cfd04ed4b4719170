package v1

import (
	"bytes"
	"fmt"
	"testing"
)

// The parser breaks lines at NEL, LS and PS too: after one of them (here
// inside a quoted argument) the quoting must still find the env value's
// line, not quote the same text on the next one.
func TestEnvQuotingFollowsTheParsersLineBreaks(t *testing.T) {
	for _, br := range []string{"\u2028", "\u0085"} {
		doc := "kind: App\nname: x\nimage: a\nargs: [\"x" + br + "y\"]\nenv:\n  RRRRRR: 3\nreplicas: 3\n"
		o, err := DecodeManifest([]byte(doc))
		if err != nil {
			t.Errorf("%q: %v", doc, err)
			continue
		}
		if a := o.(*App); a.Spec.Replicas == nil || *a.Spec.Replicas != 3 {
			t.Errorf("%q: replicas %v", doc, a.Spec.Replicas)
		}
	}
}

// An anchored env value used outside env maps is not quoted: the alias
// there must read it as before.
func TestEnvQuotingLeavesAnchorsUsedElsewhere(t *testing.T) {
	doc := "kind: App\nname: x\nimage: a\nenv:\n  N: &n 3\nreplicas: *n\n"
	if _, err := DecodeManifest([]byte(doc)); err != nil {
		t.Errorf("%q: %v", doc, err)
	}
}

// Keys of an env map are kept as written too: YAML 1.1 reads N and YES
// as booleans.
func TestEnvMapKeysKeepTheirText(t *testing.T) {
	o, err := DecodeManifest([]byte("kind: App\nname: a\nimage: x\nenv: {N: 1, YES: on, 'Q': off}\n"))
	if err != nil {
		t.Fatal(err)
	}
	env := o.(*App).Spec.Env
	for name, want := range map[string]string{"N": "1", "YES": "on", "Q": "off"} {
		if got := envValue(env, name); got != want {
			t.Errorf("env %s = %q, want %q (env %v)", name, got, want, env)
		}
	}
}

// The quoting of env values takes time in proportion to the document
// (it was quadratic in the number of values: seconds for 300 KB).
func BenchmarkYAMLToJSONLargeEnv(b *testing.B) {
	var doc bytes.Buffer
	doc.WriteString("kind: App\nname: x\nimage: a\nenv:\n")
	for i := 0; i < 20000; i++ {
		fmt.Fprintf(&doc, "  K%d: %d\n", i, i)
	}
	b.SetBytes(int64(doc.Len()))
	for b.Loop() {
		if _, err := YAMLToJSON(doc.Bytes()); err != nil {
			b.Fatal(err)
		}
	}
}
