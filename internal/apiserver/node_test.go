package apiserver_test

import (
	"context"
	"maps"
	"net/http"
	"strings"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
)

// A Node is not created through the API (its agent registers it), but it
// is applied: that is how a node is cordoned and labelled. The subnet the
// server handed out stays, whatever the body says; a registration (an
// agent's restart) keeps the cordon and the labels given, and sets the
// agent's own over them.
func TestNodeIsAppliedNotCreated(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	ctx := context.Background()
	register := func() {
		t.Helper()
		if code, body := raw(t, ts, http.MethodPost, "/api/v1/nodes/n1/register", "application/json", []byte(`{"labels":{"zone":"a"},"status":{}}`)); code != http.StatusOK {
			t.Fatalf("register: %d %s", code, trunc(body))
		}
	}
	register()
	before, err := store.Get[*v1.Node](ctx, ts.Store, "", "n1")
	if err != nil || before.Spec.Subnet == "" {
		t.Fatalf("registered node: %+v, %v; want a subnet", before, err)
	}

	code, body := raw(t, ts, http.MethodPost, "/api/v1/nodes", "application/json", []byte(`{"kind":"Node","metadata":{"name":"n2"}}`))
	if code != http.StatusUnprocessableEntity || !strings.Contains(body, "register themselves") {
		t.Errorf("create of a node = %d %s; want 422", code, trunc(body))
	}

	code, body = raw(t, ts, http.MethodPut, "/api/v1/nodes/n1?apply=true", "application/yaml",
		[]byte("kind: Node\nmetadata: {name: n1, labels: {zone: b, disk: ssd}}\nspec: {unschedulable: true, subnet: 10.99.0.0/24}\n"))
	if code != http.StatusOK {
		t.Fatalf("apply of a node = %d %s; want 200", code, trunc(body))
	}
	n, err := store.Get[*v1.Node](ctx, ts.Store, "", "n1")
	if err != nil {
		t.Fatal(err)
	}
	if !n.Spec.Unschedulable || n.Metadata.Labels["disk"] != "ssd" || n.Spec.Subnet != before.Spec.Subnet {
		t.Errorf("after the apply: unschedulable %v, labels %v, subnet %s; want cordoned, disk=ssd, subnet %s",
			n.Spec.Unschedulable, n.Metadata.Labels, n.Spec.Subnet, before.Spec.Subnet)
	}

	register()
	n, err = store.Get[*v1.Node](ctx, ts.Store, "", "n1")
	if err != nil {
		t.Fatal(err)
	}
	if !n.Spec.Unschedulable || !maps.Equal(n.Metadata.Labels, map[string]string{"zone": "a", "disk": "ssd"}) {
		t.Errorf("after a registration: unschedulable %v, labels %v; want cordoned, labels zone=a, disk=ssd", n.Spec.Unschedulable, n.Metadata.Labels)
	}
}
