package v1

import (
	"errors"
	"strings"
	"testing"
)

// A value in the map form of env reaches the environment as it is
// written. Before, the YAML to JSON step read plain values as numbers and
// YAML 1.1 booleans, so PYTHON_VERSION: 3.10 became "3.1", 007 "7", 0x1F
// "31", 1e3 "1000" and yes "true".
func TestEnvMapValuesKeepTheirText(t *testing.T) {
	for _, tc := range []struct{ written, want string }{
		{"1000000", "1000000"},
		{"3.10", "3.10"},
		{"1.50", "1.50"},
		{"007", "007"},
		{"0x1F", "0x1F"},
		{"0o17", "0o17"},
		{"1e3", "1e3"},
		{"1_000", "1_000"},
		{".5", ".5"},
		{"+1", "+1"},
		{"true", "true"},
		{"True", "True"},
		{"yes", "yes"},
		{"off", "off"},
		{"y", "y"},
		{"1:30", "1:30"},
		{"héllo 1.50", "héllo 1.50"},
		{`"1.50"`, "1.50"},
		{"'007'", "007"},
		{`a "b" \c`, `a "b" \c`},
		{"", ""},
		{"~", ""},
		{"null", ""},
	} {
		for form, doc := range map[string]string{
			"flow map":         "kind: App\nname: a\nimage: x\nenv: {V: " + tc.written + "}\n",
			"block map":        "kind: App\nname: a\nimage: x\nenv:\n  W: é\n  V: " + tc.written + "\n",
			"API form":         "kind: App\nmetadata: {name: a}\nspec:\n  image: x\n  env: {V: " + tc.written + "}\n",
			"CRLF line breaks": "kind: App\r\nname: a\r\nimage: x\r\nenv:\r\n  V: " + tc.written + "\r\n",
		} {
			o, err := DecodeManifest([]byte(doc))
			if err != nil {
				t.Errorf("%s, V: %s: %v", form, tc.written, err)
				continue
			}
			if got := envValue(o.(*App).Spec.Env, "V"); got != tc.want {
				t.Errorf("%s, V: %s became %q; want %q", form, tc.written, got, tc.want)
			}
		}
	}
}

func TestEnvMapAliasesKeepTheirText(t *testing.T) {
	o, err := DecodeManifest([]byte("kind: App\nname: a\nimage: x\nenv: {A: &v 3.10, B: *v}\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"A", "B"} {
		if got := envValue(o.(*App).Spec.Env, name); got != "3.10" {
			t.Errorf("env %s = %q; want 3.10", name, got)
		}
	}
}

// Only env maps are read as text: a number elsewhere stays a number, so
// that a count written as 3 is still one.
func TestOnlyEnvMapsKeepTheirText(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"spec:\n  template:\n    env: {V: 3.10}\n", `{"spec":{"template":{"env":{"V":"3.10"}}}}`},
		{"template: {env: {V: 0x1F}}\n", `{"template":{"env":{"V":"0x1F"}}}`},
		{"replicas: 3\nx: 3.10\nlabels: {v: 3.10}\nenv: [{name: V, value: 3.10}]\n", `{"env":[{"name":"V","value":3.1}],"labels":{"v":3.1},"replicas":3,"x":3.1}`},
	} {
		j, err := YAMLToJSON([]byte(tc.doc))
		if err != nil || string(j) != tc.want {
			t.Errorf("%q: %s, %v; want %s", tc.doc, j, err, tc.want)
		}
	}
}

// The API's JSON bodies keep a number's digits in an env map as well.
func TestEnvMapInJSONKeepsItsDigits(t *testing.T) {
	var a App
	if err := UnmarshalStrict([]byte(`{"kind":"App","metadata":{"name":"a"},"spec":{"image":"x","env":{"V":3.10,"W":1e3,"X":true}}}`), &a); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"V": "3.10", "W": "1e3", "X": "true"} {
		if got := envValue(a.Spec.Env, name); got != want {
			t.Errorf("env %s = %q; want %q", name, got, want)
		}
	}
}

func envValue(env EnvList, name string) string {
	for _, e := range env {
		if e.Name == name {
			return e.Value
		}
	}
	return "<unset>"
}

// A body of one object with more after it is refused: before, the JSON
// decoder read the first value and the YAML converter the first document,
// and the rest was dropped without a word.
func TestTrailingDataIsRefused(t *testing.T) {
	for _, body := range []string{
		`{"metadata":{"name":"a"}} {"metadata":{"name":"b"}}`,
		`{"metadata":{"name":"a"}} garbage`,
		`{"metadata":{"name":"a"}}]`,
	} {
		var a App
		err := UnmarshalStrict([]byte(body), &a)
		if err == nil || !strings.Contains(err.Error(), "after the first JSON value") {
			t.Errorf("%s: %v; want it refused", body, err)
		}
	}
	var a App
	if err := UnmarshalStrict([]byte("{\"metadata\":{\"name\":\"a\"}}\r\n\t \n"), &a); err != nil {
		t.Errorf("white space after the object: %v", err)
	}
}

func TestYAMLToJSONRefusesASecondDocument(t *testing.T) {
	for _, doc := range []string{
		"kind: App\n---\nkind: Secret\n",
		"kind: App\n--- {kind: Secret}\n",
		"kind: App\n...\nkind: Secret\n",
		"---\n---\nkind: App\n",
	} {
		if _, err := YAMLToJSON([]byte(doc)); !errors.Is(err, ErrMultipleDocuments) {
			t.Errorf("%q: %v; want ErrMultipleDocuments", doc, err)
		}
	}
	for _, doc := range []string{
		"kind: App\n---\n",
		"---\nkind: App\n",
		"kind: App\n...\n",
		"kind: App\n---\n# a comment\n",
	} {
		if _, err := YAMLToJSON([]byte(doc)); err != nil {
			t.Errorf("%q: %v; want one document", doc, err)
		}
	}
}
