package apiserver_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/store"
)

// A node's credential could set any label on its own Node, so a
// compromised node could label itself to attract the instances of an App
// constrained to trusted nodes. Labels under node-restriction.gantry.dev/
// are the cluster admin's: a node can neither register with one nor set,
// change or remove one by writing its Node; its other labels stay its own.
func TestNodeCannotSetRestrictedLabels(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	ctx := context.Background()
	_, nodeTok, err := auth.CreateToken(ctx, ts.Store, v1.TokenSpec{Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	nc := ts.client(t, nodeTok)
	const trusted = v1.LabelNodeRestrictionPrefix + "trusted"

	if _, err := nc.RegisterNode(ctx, "n1", map[string]string{trusted: "yes"}, v1.NodeStatus{}); !errors.Is(err, v1.ErrForbidden) {
		t.Fatalf("registering with %s: %v; want forbidden", trusted, err)
	}
	if _, err := nc.RegisterNode(ctx, "n1", map[string]string{"zone": "a"}, v1.NodeStatus{}); err != nil {
		t.Fatalf("registering with an ordinary label: %v", err)
	}

	// The admin (the test server's own token) sets the label.
	code, body := raw(t, ts, http.MethodPut, "/api/v1/nodes/n1?apply=true", "application/yaml",
		[]byte("kind: Node\nmetadata: {name: n1, labels: {zone: a, "+trusted+": \"yes\"}}\n"))
	if code != http.StatusOK {
		t.Fatalf("admin apply of %s: %d %s", trusted, code, trunc(body))
	}

	for _, tc := range []struct {
		name  string
		edit  func(l map[string]string)
		allow bool
	}{
		{"change it", func(l map[string]string) { l[trusted] = "no" }, false},
		{"remove it", func(l map[string]string) { delete(l, trusted) }, false},
		{"add another", func(l map[string]string) { l[v1.LabelNodeRestrictionPrefix+"pci"] = "yes" }, false},
		{"change an ordinary label", func(l map[string]string) { l["zone"] = "b" }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := store.Get[*v1.Node](ctx, ts.Store, "", "n1")
			if err != nil {
				t.Fatal(err)
			}
			tc.edit(n.Metadata.Labels)
			err = nc.Update(ctx, n)
			if tc.allow && err != nil {
				t.Fatalf("node writing its own Node: %v", err)
			}
			if !tc.allow && !errors.Is(err, v1.ErrForbidden) {
				t.Fatalf("node writing its own Node: %v; want forbidden", err)
			}
		})
	}

	// A registration (the agent restarting) keeps the admin's label.
	if _, err := nc.RegisterNode(ctx, "n1", map[string]string{"zone": "c"}, v1.NodeStatus{}); err != nil {
		t.Fatal(err)
	}
	n, err := store.Get[*v1.Node](ctx, ts.Store, "", "n1")
	if err != nil {
		t.Fatal(err)
	}
	if n.Metadata.Labels[trusted] != "yes" || n.Metadata.Labels["zone"] != "c" {
		t.Fatalf("labels after the node's writes: %v; want %s=yes (the admin's) and zone=c", n.Metadata.Labels, trusted)
	}
}

// A registration's labels were stored unchecked, so an agent's
// `--label "bad key"` made a Node that no apply could write back.
func TestNodeRegistrationChecksLabels(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	code, body := raw(t, ts, http.MethodPost, "/api/v1/nodes/n1/register", "application/json",
		[]byte(`{"labels":{"bad key":"x"},"status":{}}`))
	if code != http.StatusBadRequest || !strings.Contains(body, "labels[bad key]") {
		t.Fatalf("register with label key %q: %d %s; want 400 naming it", "bad key", code, trunc(body))
	}
	if _, err := store.Get[*v1.Node](context.Background(), ts.Store, "", "n1"); !errors.Is(err, v1.ErrNotFound) {
		t.Fatalf("node stored after a refused registration: %v", err)
	}
}
