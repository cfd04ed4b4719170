package v1

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestDecodeExampleManifest(t *testing.T) {
	f, err := os.Open("../../examples/hello.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	objs, err := DecodeManifests(f)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if len(objs) != 1 {
		t.Fatalf("got %d objects, want 1", len(objs))
	}
	a, ok := objs[0].(*App)
	if !ok {
		t.Fatalf("got %T, want *App", objs[0])
	}
	if a.Metadata.Name != "hello" || a.Metadata.Namespace != "default" || a.DesiredReplicas() != 3 {
		t.Errorf("metadata or replicas wrong: %+v replicas=%d", a.Metadata, a.DesiredReplicas())
	}
	if a.Spec.Resources.CPU != 50 || a.Spec.Resources.Memory != 32<<20 {
		t.Errorf("resources = %+v", a.Spec.Resources)
	}
	if got := a.Spec.Health.Readiness; got == nil || got.HTTP.Port != 8080 || got.Period.D().Seconds() != 1 {
		t.Errorf("readiness = %+v", got)
	}
	if len(a.Spec.Env) != 1 || a.Spec.Env[0].Name != "GREETING" || a.Spec.Env[0].Value != "hi" {
		t.Errorf("env = %+v", a.Spec.Env)
	}
}

func TestDecodeManifestErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string // substrings that must all appear in the error
	}{
		{"missing kind", "name: x\nimage: a", []string{"kind is required"}},
		{"unknown kind", "kind: Pod\nname: x", []string{`unknown kind "Pod"`}},
		{"bad api version", "kind: App\napiVersion: v9\nname: x\nimage: a", []string{"apiVersion"}},
		{"unknown field names the field", "kind: App\nname: x\nimgae: a", []string{"spec.imgae: unknown field"}},
		// Not one round of fixes at a time: unknown fields, each with its
		// whole path, and what validation finds, in one answer.
		{"unknown fields do not hide the other problems", "kind: App\nname: Bad_Name\nimage: ''\nreplicas: -1\nports: [{port: 70000, bogus: 1}]\nresourcez: {}\nstrategy: {maxSurge: 1, extra: 2}",
			[]string{"spec.resourcez: unknown field", "spec.ports[0].bogus: unknown field", "spec.strategy.extra: unknown field",
				"metadata.name:", "spec.image:", "spec.replicas:", "spec.ports[0].port:"}},
		{"unknown fields inside env items are found", "kind: App\nname: x\nimage: a\nenv: [{name: A, valeu: x}, {name: B, secret: {name: s, kee: k}}]",
			[]string{"spec.env[0].valeu: unknown field", "spec.env[1].secret.kee: unknown field"}},
		{"unknown fields in the API form have their paths", `{"kind":"App","metadata":{"name":"x","labelz":{}},"spec":{"image":"a","ports":[{"port":80,"bogus":1}]}}`,
			[]string{"metadata.labelz: unknown field", "spec.ports[0].bogus: unknown field"}},
		{"wrong type names the field", "kind: App\nname: x\nimage: a\nreplicas: many", []string{"spec.replicas", "whole number"}},
		{"wrong types in a list name the item", "kind: App\nname: x\nimage: a\nenv: [{name: A, value: a}, {name: B, value: [1]}]\nports: [{port: 80}, {port: http}]",
			[]string{"spec.env[1].value: must be a string, not array", "spec.ports[1].port: must be a whole number, not string"}},
		{"every field error is reported", `kind: App
name: Bad_Name
image: ""
replicas: -1
ports: [{port: 8080}, {port: 70000, protocol: sctp}]
restartPolicy: sometimes
`, []string{
			"metadata.name: must be a DNS-1123 label",
			"spec.image: is required",
			"spec.replicas: must be between 0 and",
			"spec.ports[1].port: must be 1-65535",
			"spec.ports[1].protocol: must be http, tcp or udp",
			"spec.restartPolicy: must be always, on-failure or never",
		}},
		{"a constraint value no label can have", "kind: App\nname: x\nimage: a\nconstraints: [{label: zone, op: in, values: [a, \"a\\x01b\"]}, {label: \"bad key!\", value: x}]",
			[]string{`spec.constraints[0].values[1]: "a\x01b" is not a label value`, `spec.constraints[1].label: "bad key!" is not a label key`}},
		{"probe period below the floor", "kind: App\nname: x\nimage: a\nhealth: {liveness: {tcp: {port: 80}, period: 1ns}}", []string{"spec.health.liveness.period: must be at least 100ms (got 1ns)"}},
		{"probe needs one check", "kind: App\nname: x\nimage: a\nhealth: {readiness: {period: 1s}}", []string{"spec.health.readiness: set exactly one of http, tcp or exec"}},
		{"bad cpu quantity", "kind: App\nname: x\nimage: a\nresources: {cpu: lots}", []string{`cpu "lots"`}},
		{"bad duration", "kind: App\nname: x\nimage: a\nstrategy: {drainDelay: soon}", []string{`duration "soon"`}},
		{"strategy cannot stall", "kind: App\nname: x\nimage: a\nstrategy: {maxSurge: 0, maxUnavailable: 0}", []string{"spec.strategy: maxSurge and maxUnavailable cannot both be 0"}},
		{"minReady past the default deadline", "kind: App\nname: x\nimage: a\nstrategy: {minReady: 5m}", []string{"spec.strategy.minReady: must be at least 0 and shorter than strategy.progressDeadline (2m0s)"}},
		{"minReady past the deadline given", "kind: App\nname: x\nimage: a\nstrategy: {minReady: 30s, progressDeadline: 30s}", []string{"spec.strategy.minReady", "(30s)"}},
		{"negative minReady", "kind: App\nname: x\nimage: a\nstrategy: {minReady: -1s}", []string{"spec.strategy.minReady: must be at least 0"}},
		{"allowHTTP without tls", "kind: App\nname: x\nimage: a\nports: [{name: http, port: 80}]\nroutes: [{host: a.example.com, allowHTTP: true}]", []string{"spec.routes[0].allowHTTP: applies to routes with tls only"}},
		{"an unknown load balancing policy", "kind: App\nname: x\nimage: a\nloadBalancing: random", []string{`spec.loadBalancing: must be round-robin or least-requests (got "random")`}},
		{"two tls for one host", "kind: App\nname: x\nimage: a\nports: [{name: http, port: 80}]\nroutes: [{host: a.example.com, path: /a, tls: auto}, {host: A.example.com, path: /b}, {host: a.example.com, path: /c, tls: c-cert}]",
			[]string{`spec.routes[2].tls: is "c-cert" but spec.routes[0] serves a.example.com with tls "auto"`}},
		{"bare wildcard host", "kind: App\nname: x\nimage: a\nports: [{name: http, port: 80}]\nroutes: [{host: \"*\"}]", []string{`spec.routes[0].host: a bare "*" matches no host name`}},
		{"query in a route path", "kind: App\nname: x\nimage: a\nports: [{name: http, port: 80}]\nroutes: [{host: a.example.com, path: \"/a?x=1\"}]", []string{"spec.routes[0].path: must be a path alone", `(found "?")`}},
		{"fragment in a route path", "kind: App\nname: x\nimage: a\nports: [{name: http, port: 80}]\nroutes: [{host: a.example.com, path: \"/a#f\"}]", []string{"spec.routes[0].path: must be a path alone"}},
		{"tiny progress deadline", "kind: App\nname: x\nimage: a\nstrategy: {progressDeadline: 1ms}", []string{"spec.strategy.progressDeadline: must be at least 1s"}},
		{"negative progress deadline", "kind: App\nname: x\nimage: a\nstrategy: {progressDeadline: -5s}", []string{"spec.strategy.progressDeadline: must be at least 1s"}},
		{"negative history", "kind: App\nname: x\nimage: a\nrevisionHistoryLimit: -1", []string{"spec.revisionHistoryLimit: must be between 0 and 1000"}},
		{"too much history", "kind: App\nname: x\nimage: a\nrevisionHistoryLimit: 1001", []string{"spec.revisionHistoryLimit: must be between 0 and 1000"}},
		{"a bad count says where it is", "kind: App\nname: x\nimage: a\nstrategy: {maxSurge: -1}", []string{"spec.strategy.maxSurge: -1: want a non-negative count"}},
		{"a bad duration says where it is", "kind: App\nname: x\nimage: a\nstrategy: {progressDeadline: soon}", []string{"spec.strategy.progressDeadline:", `"soon"`}},
		{"field names are case-sensitive", "kind: App\nname: x\nimage: a\nReplicas: 3", []string{`spec.Replicas: unknown field: did you mean "replicas"?`}},
		{"nested field names are case-sensitive", "kind: App\nname: x\nimage: a\nstrategy: {MaxSurge: 1}", []string{`spec.strategy.MaxSurge: unknown field: did you mean "maxSurge"?`}},
		{"a key twice in YAML", "kind: App\nname: x\nname: y\nimage: a", []string{`"name" already set`}},
		{"a key twice in an API-form JSON document", `{"kind":"App","metadata":{"name":"x"},"spec":{"image":"a","ports":[{"port":1,"port":2}]}}`, []string{`"port" already set`}},
		{"route needs http port", "kind: App\nname: x\nimage: a\nroutes: [{host: a.example.com}]", []string{"spec.routes[0]: a route needs an http port"}},
		{"root route twice", "kind: App\nname: x\nimage: a\nports: [{name: http, port: 80}]\nroutes: [{host: a.example.com, path: /}, {host: a.example.com, path: //}]", []string{"spec.routes[1]: duplicates spec.routes[0] (a.example.com/)"}},
		{"one route twice", "kind: App\nname: x\nimage: a\nports: [{name: http, port: 80}]\nroutes: [{host: a.example.com, path: /api}, {host: A.example.com, path: /api/}]", []string{"spec.routes[1]: duplicates spec.routes[0] (a.example.com/api)"}},
		{"duplicate port names", "kind: App\nname: x\nimage: a\nports: [{name: web, port: 1}, {name: web, port: 2}]", []string{`spec.ports[1].name: "web" is already used by ports[0]`}},
		{"bad image reference", "kind: App\nname: x\nimage: Hello World", []string{"spec.image: must not contain spaces"}},
		{"namespace on a cluster kind", "kind: Namespace\nname: team\nnamespace: other", []string{"metadata.namespace: Namespace is cluster-scoped"}},
		{"not a mapping", "- a\n- b", []string{"must be a mapping"}},
		{"not yaml", "kind: App\n  name: : x\n\t- y", []string{"not valid YAML"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeManifest([]byte(tt.doc))
			if err == nil {
				t.Fatal("decode succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestDecodeManifestsLocatesBadDocuments(t *testing.T) {
	stream := `# leading comment
kind: Namespace
name: team
---
kind: App
name: good
namespace: team
image: good:v1
--- # a comment after the separator
kind: App
name: bad
image: ""
---
`
	objs, err := DecodeManifests(strings.NewReader(stream))
	if len(objs) != 2 {
		t.Fatalf("got %d objects, want 2 (the namespace and the good app)", len(objs))
	}
	var me *ManifestError
	if !errors.As(err, &me) || me.Doc != 3 || me.Name != "bad" {
		t.Fatalf("error = %v, want document 3 (app/bad)", err)
	}
	if !strings.Contains(err.Error(), "document 3 (app/bad): spec.image: is required") {
		t.Errorf("error text %q", err)
	}
}

func TestDecodeAPIForm(t *testing.T) {
	doc := `kind: App
apiVersion: v1
metadata: {name: web, namespace: prod, revision: 99, labels: {tier: front}}
spec: {image: web:v2, replicas: 2, env: [{name: A, value: b}]}
status: {replicas: 7}
`
	o, err := DecodeManifest([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	a := o.(*App)
	if a.Metadata.Namespace != "prod" || a.Metadata.Revision != 0 || a.Status.Replicas != 0 || *a.Spec.Replicas != 2 {
		t.Errorf("got %+v %+v; revision and status must be dropped", a.Metadata, a.Status)
	}
}

func TestEnvForms(t *testing.T) {
	for _, doc := range []string{
		"kind: App\nname: x\nimage: a\nenv: {B: 2, A: one}",
		"kind: App\nname: x\nimage: a\nenv: [{name: A, value: one}, {name: B, value: '2'}]",
	} {
		o, err := DecodeManifest([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		env := o.(*App).Spec.Env
		if len(env) != 2 || env[0] != (EnvVar{Name: "A", Value: "one"}) || env[1] != (EnvVar{Name: "B", Value: "2"}) {
			t.Errorf("%q: env = %+v", doc, env)
		}
	}
}

func TestTemplateHashIgnoresNonTemplateFields(t *testing.T) {
	a, _ := DecodeManifest([]byte("kind: App\nname: x\nimage: a:v1\nreplicas: 1"))
	b, _ := DecodeManifest([]byte("kind: App\nname: x\nimage: a:v1\nreplicas: 5\nroutes: [{host: x.example.com}]\nports: []"))
	c, _ := DecodeManifest([]byte("kind: App\nname: x\nimage: a:v2"))
	ha, hb, hc := a.(*App).Spec.Template.Hash(), b.(*App).Spec.Template.Hash(), c.(*App).Spec.Template.Hash()
	if ha != hb {
		t.Errorf("replicas and routes changed the template hash: %s vs %s", ha, hb)
	}
	if ha == hc {
		t.Error("a new image did not change the template hash")
	}
}

// FuzzDecodeManifest feeds arbitrary documents to the decoder and the
// validator: they must never panic, and whatever decodes cleanly must
// survive a round trip through JSON unchanged.
func FuzzDecodeManifest(f *testing.F) {
	seeds := []string{
		"kind: App\nname: hello\nimage: hello:v1\nreplicas: 3\nports: [{name: http, port: 8080}]",
		"kind: App\nname: x\nimage: a\nresources: {cpu: 0.5, memory: 1Gi, limits: {cpu: 1}}",
		"kind: App\nname: x\nimage: a\nhealth: {liveness: {exec: {command: [true]}}}",
		"kind: App\nname: x\nimage: a\nstrategy: {maxSurge: '50%', maxUnavailable: 1}",
		"kind: Namespace\nname: team\nquota: {cpu: 2, memory: 4Gi}",
		"kind: App\nmetadata: {name: x}\nspec: {image: a}",
		"{}", "---\n---", "kind: [", "kind: App\nname: x\nimage: a@sha256:" + strings.Repeat("a", 64),
		"kind: AppList\nitems:\n- {kind: App, metadata: {name: x}, spec: {image: a}}\n- {metadata: {name: y}, spec: {image: b}}",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		objs, _ := DecodeManifests(strings.NewReader(string(doc)))
		for _, o := range objs {
			if errs := Validate(o); len(errs) > 0 {
				t.Fatalf("DecodeManifests returned an object that fails validation: %v", errs)
			}
			b, err := marshalForTest(o)
			if err != nil {
				t.Fatalf("marshal decoded object: %v", err)
			}
			o2, err := DecodeManifest(b)
			if err != nil {
				t.Fatalf("round trip of %s failed: %v", b, err)
			}
			b2, _ := marshalForTest(o2)
			if string(b) != string(b2) {
				t.Fatalf("round trip changed the object:\n%s\n%s", b, b2)
			}
		}
	})
}

func TestFlatRoleBindingKeepsItsNamespace(t *testing.T) {
	o, err := DecodeManifest([]byte("kind: RoleBinding\nname: bob-viewer\nuser: bob\nrole: viewer\nnamespace: team\n"))
	if err != nil {
		t.Fatal(err)
	}
	b := o.(*RoleBinding)
	if b.Spec.Namespace != "team" || b.Metadata.Namespace != "" {
		t.Fatalf("spec.namespace %q, metadata.namespace %q", b.Spec.Namespace, b.Metadata.Namespace)
	}
}

func TestRoutePath(t *testing.T) {
	for in, want := range map[string]string{
		"": "/", "/": "/", "//": "/", "///": "/",
		"/api": "/api", "/api/": "/api", "api": "/api", "/a/b//": "/a/b",
	} {
		if got := RoutePath(in); got != want {
			t.Errorf("RoutePath(%q) = %q, want %q", in, got, want)
		}
	}
}

// What strict decoding must still take: empty values (YAML null) for
// fields of our own types, and merge keys that override what they bring.
func TestDecodeManifestAcceptsNullsAndMergeOverrides(t *testing.T) {
	for _, doc := range []string{
		"kind: App\nname: x\nimage: a\nstrategy: {maxSurge: , drainDelay: ~}\nstopGracePeriod:\n",
		"kind: App\nname: x\nimage: a\nports: [{name: http, port: 8080}]\nhealth:\n  readiness: &p {tcp: {port: 8080}, period: 1s}\n  liveness: {<<: *p, period: 2s}\n",
	} {
		o, err := DecodeManifest([]byte(doc))
		if err != nil {
			t.Errorf("%q: %v", doc, err)
			continue
		}
		if a := o.(*App); a.Spec.Health.Liveness != nil && a.Spec.Health.Liveness.Period.D().Seconds() != 2 {
			t.Errorf("the merge override was lost: liveness period %s", a.Spec.Health.Liveness.Period)
		}
	}
}

// A stream of JSON objects (`jq -c '.items[]' | gantry apply -f -`) is
// one document per object, as kubectl reads it; it was refused with a
// message telling the user to use `gantry apply -f`.
func TestSplitDocumentsReadsAJSONStream(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{`{"kind":"Namespace","name":"a"}` + "\n" + `{"kind":"Namespace","name":"b"}` + "\n", 2},
		{`{"kind":"Namespace","name":"a"}{"kind":"Namespace","name":"b"}`, 2},
		{`{"kind":"Namespace","name":"a"}`, 1},
		{"{kind: Namespace, name: a}\n", 1},          // YAML flow mapping: left to YAML
		{`{"kind":"Namespace","name":"a"} stray`, 1}, // not a clean stream: left whole
		{"kind: Namespace\nname: a\n---\n{\"kind\":\"Namespace\",\"name\":\"b\"}\n{\"kind\":\"Namespace\",\"name\":\"c\"}\n", 3},
	}
	for _, tt := range tests {
		docs, err := SplitDocuments(strings.NewReader(tt.in))
		if err != nil {
			t.Fatalf("%q: %v", tt.in, err)
		}
		if len(docs) != tt.want {
			t.Errorf("%q: %d documents; want %d", tt.in, len(docs), tt.want)
		}
	}
	objs, err := DecodeManifests(strings.NewReader(`{"kind":"Namespace","name":"a"}` + "\n" + `{"kind":"Namespace","name":"b"}` + "\n"))
	if err != nil || len(objs) != 2 || objs[1].GetMeta().Name != "b" {
		t.Fatalf("decode of a JSON stream: %v, %v", objs, err)
	}
}

// `gantry get apps -o yaml` writes a list (kind: AppList, items: [...]);
// apply, diff and delete refused it ("unknown kind AppList"), where
// kubectl takes its own List output back (review helper-166). Its items
// are documents of their own now.
func TestAListDecodesAsItsItems(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      []string // kind/name of each object
	}{
		{"yaml, as get -o yaml writes it", "kind: AppList\nitems:\n- kind: App\n  metadata: {name: a, namespace: default}\n  spec: {image: a:v1}\n- kind: App\n  metadata: {name: b, namespace: default}\n  spec: {image: b:v1}\n",
			[]string{"App/a", "App/b"}},
		{"json, as get -o json writes it", `{"kind":"AppList","items":[{"kind":"App","metadata":{"name":"a"},"spec":{"image":"a:v1"}}]}`,
			[]string{"App/a"}},
		{"an item without a kind takes the list's", "kind: SecretList\nitems:\n- {metadata: {name: s}, data: {k: dg==}}\n",
			[]string{"Secret/s"}},
		{"beside other documents", "kind: App\nname: c\nimage: c:v1\n---\nkind: AppList\nitems: [{kind: App, metadata: {name: d}, spec: {image: d:v1}}]\n",
			[]string{"App/c", "App/d"}},
		{"a document that only mentions List and items is itself", "kind: App\nname: e\nimage: e:v1\nenv: {items: List}\n",
			[]string{"App/e"}},
		{"an empty list is no objects", "kind: AppList\nitems: []\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := DecodeManifests(strings.NewReader(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, o := range objs {
				got = append(got, o.GetType().Kind+"/"+o.GetMeta().Name)
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("decoded %v, want %v", got, tc.want)
			}
		})
	}
}

// A list without items (none, null, misplaced) was read as no objects
// without a word (review helper-167); it is refused for its kind now.
func TestAListWithoutItemsIsRefused(t *testing.T) {
	for _, doc := range []string{
		"kind: AppList\n",
		"kind: AppList\nitems: null\n",
		"kind: AppList\nmetadata: {items: [1]}\n",
		"kind: AppList\nitems: {a: 1}\n",
	} {
		if objs, err := DecodeManifests(strings.NewReader(doc)); err == nil {
			t.Errorf("%q decoded to %d objects without an error", doc, len(objs))
		}
	}
}
