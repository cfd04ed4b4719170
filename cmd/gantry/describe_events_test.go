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
