package v1

import (
	"errors"
	"strings"
	"testing"
)

func TestDecodeRefsKeepsWhatNamesAnObject(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		refs    []string // kind/namespace/name
		errDocs []int
	}{
		{"valid", "kind: App\nname: web\nimage: web:v1\n", []string{"App/team/web"}, nil},
		{"invalid field values still name the app", "kind: App\nname: web\nimage: web:v1\nreplicas: -1\n", []string{"App/team/web"}, nil},
		{"unknown fields still name the app", "kind: App\nname: web\nnamespace: other\nimage: web:v1\nbogus: 1\n", []string{"App/other/web"}, nil},
		{"no kind", "name: web\n", nil, []int{1}},
		{"no name", "kind: App\nimage: web:v1\n", nil, []int{1}},
		{"not YAML", "kind: [\n", nil, []int{1}},
		{"mixed", "kind: Namespace\nname: team2\n---\nkind: Nope\nname: x\n---\nkind: Secret\nname: s\nkeys: [a]\n", []string{"Namespace//team2", "Secret/team/s"}, []int{2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := DecodeRefsIn(strings.NewReader(tt.in), "team")
			var got []string
			for _, o := range objs {
				got = append(got, o.GetType().Kind+"/"+o.GetMeta().Namespace+"/"+o.GetMeta().Name)
			}
			if strings.Join(got, " ") != strings.Join(tt.refs, " ") {
				t.Errorf("refs %v, want %v", got, tt.refs)
			}
			var docs []int
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				for _, e := range j.Unwrap() {
					var me *ManifestError
					if errors.As(e, &me) {
						docs = append(docs, me.Doc)
					}
				}
			}
			if len(docs) != len(tt.errDocs) || (len(docs) > 0 && docs[0] != tt.errDocs[0]) {
				t.Errorf("errors for documents %v (%v), want %v", docs, err, tt.errDocs)
			}
		})
	}
}
