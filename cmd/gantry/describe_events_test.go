package main

import (
	"context"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// Events about cluster-scoped objects (a Node's NodeNotReady) are stored
// in namespace default, but `gantry describe node NAME` looked for them in
// the current namespace: with -n team it printed "Events: none".
func TestDescribeNodeShowsItsEventsWhateverTheNamespace(t *testing.T) {
	rs := startRolloutServer(t)
	ctx := context.Background()
	if err := rs.st.Create(ctx, &v1.Node{TypeMeta: v1.TypeMeta{Kind: "Node"}, Metadata: v1.ObjectMeta{Name: "worker-1"}}); err != nil {
		t.Fatal(err)
	}
	if err := rs.st.Create(ctx, &v1.Event{TypeMeta: v1.TypeMeta{Kind: "Event"}, Metadata: v1.ObjectMeta{Name: "worker-1.1.abcd", Namespace: v1.DefaultNamespace},
		Type: v1.EventWarning, Reason: "NodeNotReady", Message: "node worker-1 stopped sending heartbeats", Object: v1.ObjectRef{Kind: "Node", Name: "worker-1"}, Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err, _ := rs.run(t, 10*time.Second, "create", "namespace", "team"); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"describe", "node", "worker-1"}, {"describe", "node", "worker-1", "-n", "team"}} {
		out, err, _ := rs.run(t, 10*time.Second, args...)
		if err != nil || !strings.Contains(out, "NodeNotReady") {
			t.Errorf("gantry %s: %v; the NodeNotReady event is missing:\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// describe app by a user who may read Apps but not list their instances,
// revisions or events printed "Instances: none", an empty revision table
// and no Events: false statements. What could not be read is said.
func TestDescribeSaysWhatItCouldNotRead(t *testing.T) {
	rs := startRolloutServer(t)
	applyRolloutApp(t, rs, "hello", "hello:v1")
	ctx := context.Background()
	for _, m := range []string{
		"kind: Role\nname: app-reader\nrules: [{verbs: [get], resources: [apps]}]\n",
		"kind: User\nname: ar\n",
		"kind: RoleBinding\nname: ar-apps\nuser: ar\nrole: app-reader\nnamespace: default\n",
	} {
		o, err := v1.DecodeManifest([]byte(m))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rs.c.Apply(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := rs.c.CreateToken(ctx, v1.TokenSpec{User: "ar"})
	if err != nil {
		t.Fatal(err)
	}
	ar := &rolloutServer{url: rs.url, token: tok.Secret}
	out, err, _ := ar.run(t, 10*time.Second, "describe", "app", "hello")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "none") || strings.Count(out, "(cannot be read: ") != 3 {
		t.Errorf("describe by a user who may only get apps:\n%s", out)
	}
}
