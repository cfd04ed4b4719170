package v1

import (
	"strings"
	"testing"
)

func TestUnmarshalStrict(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []string // substrings of the error; none for success
	}{
		{"a clean App", `{"kind":"App","metadata":{"name":"x"},"spec":{"image":"a","replicas":2,"strategy":{"maxSurge":"50%"}}}`, nil},
		{"a key twice", `{"kind":"App","metadata":{"name":"x","name":"y"},"spec":{"image":"a"}}`, []string{"metadata.name: appears twice"}},
		{"a key twice deep in a list", `{"kind":"App","metadata":{"name":"x"},"spec":{"image":"a","ports":[{"port":1},{"port":1,"port":2}]}}`, []string{"spec.ports[1].port: appears twice"}},
		{"the same key in two objects is fine", `{"kind":"App","metadata":{"name":"x"},"spec":{"image":"a","ports":[{"port":1},{"port":2}]}}`, nil},
		{"a key in the wrong case", `{"kind":"App","metadata":{"name":"x"},"spec":{"Image":"a"}}`, []string{`spec.Image: unknown field: did you mean "image"?`}},
		{"an embedded field in the wrong case", `{"Kind":"App","metadata":{"name":"x"},"spec":{"image":"a"}}`, []string{`Kind: unknown field: did you mean "kind"?`}},
		{"a bad value of our own type", `{"kind":"App","metadata":{"name":"x"},"spec":{"image":"a","strategy":{"maxUnavailable":"lots"}}}`, []string{"spec.strategy.maxUnavailable:"}},
		{"a bad value in a list", `{"kind":"App","metadata":{"name":"x"},"spec":{"image":"a","health":{"readiness":{"period":"soon","tcp":{"port":1}}}}}`, []string{"spec.health.readiness.period:"}},
		{"a wrong JSON type", `{"kind":"App","metadata":{"name":"x"},"spec":{"replicas":"3"}}`, []string{"spec.replicas: must be"}},
		{"not an object", `[1,2]`, []string{"must be"}},
		{"null leaves a field of our own type unset", `{"kind":"App","metadata":{"name":"x"},"spec":{"image":"a","stopGracePeriod":null,"strategy":{"maxSurge":null,"drainDelay":null}}}`, nil},
		{"a type error in the embedded template has the JSON path", `{"kind":"App","metadata":{"name":"x"},"spec":{"image":"a","ports":"http"}}`, []string{"spec.ports: must be"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var a App
			err := UnmarshalStrict([]byte(tc.body), &a)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("error %v, want none", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func FuzzUnmarshalStrict(f *testing.F) {
	f.Add([]byte(`{"kind":"App","metadata":{"name":"x","name":"y"},"spec":{"ports":[{"port":1,"port":2}],"Image":"a"}}`))
	f.Add([]byte(`[[{"a":{"b":[1,{"c":2,"c":3}]}}]]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var a App
		UnmarshalStrict(b, &a) // must not panic
		duplicateKeys(b)
	})
}

// A deeply nested body costs little: paths are made only for what is
// reported, and nesting past any manifest's is not looked into.
func TestDuplicateKeysOnDeepNesting(t *testing.T) {
	deep := `{"node":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`
	allocs := testing.AllocsPerRun(3, func() { duplicateKeys([]byte(deep)) })
	if allocs > 2000 {
		t.Fatalf("%.0f allocations for a 20 KB body nested 10,000 deep", allocs)
	}
	objs := `{"a":` + strings.Repeat(`{"k":1,"k":`, 50) + "2" + strings.Repeat("}", 50) + "}"
	if got := duplicateKeys([]byte(objs)); len(got) == 0 || len(got) > 10 || got[0].Field != "a.k" {
		t.Fatalf("nested duplicates: %v; want a.k first and at most 10 reported", got)
	}
}
