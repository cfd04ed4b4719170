package v1

import (
	"strings"
	"testing"
)

// A "---" line with content after it, or a "..." end marker, separates
// documents: before, the YAML decoder read only the first document of
// the chunk and the rest was dropped without a word.
func TestEveryDocumentMarkerSeparates(t *testing.T) {
	for name, doc := range map[string]string{
		"--- with inline content": "kind: App\nname: a\nimage: x\n--- {kind: App, name: b, image: yy}\n",
		"document end marker":     "kind: App\nname: a\nimage: x\n...\nkind: App\nname: b\nimage: yy\n",
		"--- with a tag":          "kind: App\nname: a\nimage: x\n--- !!map\nkind: App\nname: b\nimage: yy\n",
	} {
		objs, err := DecodeManifests(strings.NewReader(doc))
		if err != nil || len(objs) != 2 {
			t.Errorf("%s: %d object(s), err %v; want both apps", name, len(objs), err)
		}
	}
}

// Numbers in the map form of env keep their digits: before, 1000000
// became "1e+06" and 123456789 "1.23456789e+08".
func TestEnvMapNumbersKeepTheirDigits(t *testing.T) {
	o, err := DecodeManifest([]byte("kind: App\nname: a\nimage: x\nenv: {MAX: 1000000, ID: 123456789}\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range o.(*App).Spec.Env {
		if want := map[string]string{"MAX": "1000000", "ID": "123456789"}[e.Name]; e.Value != want {
			t.Errorf("env %s = %q; want %q", e.Name, e.Value, want)
		}
	}
}

// A key given twice is refused also when "<<" appears in the document
// as text (a heredoc argument) rather than as a merge key.
func TestDuplicateKeyRefusedBesideAHeredoc(t *testing.T) {
	_, err := DecodeManifest([]byte("kind: App\nname: a\nimage: x:v1\nimage: x:v2\nargs: ['cat <<EOF']\n"))
	if err == nil {
		t.Errorf("image given twice was accepted because an arg contains <<")
	}
}

// CPU in millicores and a maxSurge count are bounded, so that the quota
// arithmetic on them cannot overflow.
func TestCountsAreBounded(t *testing.T) {
	for _, doc := range []string{
		"kind: App\nname: a\nimage: x\nresources: {cpu: 4611686018427387904m}\n",
		"kind: App\nname: a\nimage: x\nstrategy: {maxSurge: 9223372036854775807}\n",
	} {
		if _, err := DecodeManifest([]byte(doc)); err == nil {
			t.Errorf("accepted: %q", doc)
		}
	}
}
