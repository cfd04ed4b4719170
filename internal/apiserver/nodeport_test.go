package apiserver_test

import (
	"context"
	"strings"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
)

// A nodePort is checked against every other App's at apply, as routes
// are: the load balancer can publish it for one App only.
func TestNodePortCollisionsAreRefused(t *testing.T) {
	ts, create := claimServer(t)
	app := func(ns, name, ports string) (int, string) {
		return create(ns, name, "image: db:v1, ports: "+ports)
	}
	for _, tc := range []struct {
		ns, name, ports string
		code            int
		says            string
	}{
		{"default", "pg", "[{name: pg, port: 5432, protocol: tcp, expose: tcp, nodePort: 30432}]", 201, ""},
		{"default", "pg2", "[{name: pg, port: 5432, protocol: tcp, expose: tcp, nodePort: 30432}]", 409, "30432 is already the node port of app default/pg"},
		{"shop", "pg", "[{name: sql, port: 5433, protocol: tcp, expose: tcp, nodePort: 30432}]", 409, "node port of app default/pg"},
		{"shop", "auto", "[{name: pg, port: 5432, protocol: tcp, expose: tcp}]", 201, ""},
		{"shop", "other", "[{name: pg, port: 5432, protocol: tcp, expose: tcp, nodePort: 30433}]", 201, ""},
	} {
		code, body := app(tc.ns, tc.name, tc.ports)
		if code != tc.code || !strings.Contains(body, tc.says) {
			t.Errorf("%s/%s with ports %s: %d %s; want %d saying %q", tc.ns, tc.name, tc.ports, code, body, tc.code, tc.says)
		}
	}
	// A port the load balancer chose for another App (in its status) was
	// free for the taking: another namespace's App that named it got
	// that App's clients.
	a, err := store.Get[*v1.App](context.Background(), ts.Store, "shop", "auto")
	if err != nil {
		t.Fatal(err)
	}
	a.Status.NodePorts = []v1.NodePortStatus{{Port: "pg", NodePort: 30500}}
	if err := ts.Store.Update(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	if code, body := app("default", "x", "[{name: pg, port: 5432, protocol: tcp, expose: tcp, nodePort: 30500}]"); code != 409 ||
		!strings.Contains(body, `30500 is the node port chosen for port \"pg\" of app shop/auto`) {
		t.Errorf("an App naming the node port chosen for shop/auto: %d %s; want 409 naming it", code, body)
	}
	// An App keeps its own node port when it is applied again.
	if code, body := raw(t, ts, "PUT", "/api/v1/namespaces/default/apps/pg?apply=true", "application/yaml",
		[]byte("kind: App\nmetadata: {name: pg}\nspec: {image: db:v2, ports: [{name: pg, port: 5432, protocol: tcp, expose: tcp, nodePort: 30432}]}\n")); code != 200 {
		t.Errorf("re-apply of default/pg with its own node port: %d %s", code, body)
	}
}
