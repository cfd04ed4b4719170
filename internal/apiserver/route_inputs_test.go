package apiserver_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
)

// Route values the load balancer would take otherwise than meant were
// admitted: a tls no Secret can be named (so HTTPS for the host failed for
// ever, and the warning told the user to create a Secret the API then
// refused), "Auto" for auto, and a path with %-escapes, which never
// matches a request (they are matched by their decoded path).
func TestRouteInputsTheLoadBalancerCannotServeAreRefused(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	c, warnings := warningClient(t, ts)
	ctx := context.Background()
	apply := func(name, extra string) error {
		o, err := v1.DecodeManifest([]byte("kind: App\nname: " + name + "\nimage: web:v1\n" + extra))
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Apply(ctx, o)
		return err
	}
	for _, tc := range []struct {
		name, extra string
		want        string // "" when admitted
	}{
		{"a1", "ports: [{port: 8080}]\nroutes: [{host: a.example.com, tls: Not_A_Secret}]\n", `"Not_A_Secret" is neither auto`},
		{"a2", "ports: [{port: 8080}]\nroutes: [{host: b.example.com, tls: Auto}]\n", "write auto in lower case"},
		{"a3", "ports: [{port: 8080}]\nroutes: [{host: c.example.com, tls: ../x}]\n", "is neither auto"},
		{"a4", "ports: [{port: 8080}]\nroutes: [{host: d.example.com, path: /%7Euser}]\n", `write "/~user"`},
		{"a5", "ports: [{port: 8080}]\nroutes: [{host: e.example.com, path: /a%20b}]\n", `no route can serve it`},
		{"a6", "ports: [{port: 8080}]\nroutes: [{host: e.example.com, path: /a%2Fb}]\n", `write "/a/b"`},
		{"ok1", "ports: [{port: 8080}]\nroutes: [{host: f.example.com, tls: auto}, {host: g.example.com, tls: my-cert, path: /100%}]\n", ""},
	} {
		err := apply(tc.name, tc.extra)
		var se *v1.StatusError
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v; want it admitted", tc.name, err)
		case tc.want != "" && (!errors.As(err, &se) || se.Status.Code != http.StatusBadRequest || !strings.Contains(fmt.Sprint(se.Status), tc.want)):
			t.Errorf("%s: %v; want 400 saying %q", tc.name, err, tc.want)
		}
	}

	// A route stored as it is before these checks still updates.
	old := &v1.App{TypeMeta: v1.TypeMeta{Kind: "App"}, Metadata: v1.ObjectMeta{Name: "old", Namespace: "default"}}
	old.Spec.Image = "web:v1"
	old.Spec.Ports = []v1.Port{{Port: 8080}}
	old.Spec.Routes = []v1.Route{{Host: "old.example.com", TLS: "Auto", Path: "/%7Eold"}}
	v1.SetDefaults(old)
	if err := ts.Store.Create(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := apply("old", "ports: [{port: 8080}]\nenv: {V: \"2\"}\nroutes: [{host: old.example.com, tls: Auto, path: /%7Eold}]\n"); err != nil {
		t.Fatalf("updating an App stored with such a route: %v", err)
	}
	if a, err := store.Get[*v1.App](ctx, ts.Store, "default", "old"); err != nil || a.Spec.Env == nil {
		t.Fatalf("the update was not stored (%v)", err)
	}

	// The PROXY protocol header goes with the node port only: an http
	// port's routes and default host reach it without one.
	*warnings = nil
	if err := apply("pp", "ports: [{name: web, port: 8080, expose: tcp, proxyProtocol: v2}]\n"); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(*warnings, "\n"); !strings.Contains(got, "port web gets the PROXY protocol header (v2) on its node port only") {
		t.Errorf("warnings %q; want one about the PROXY header of an http port", got)
	}
	*warnings = nil
	if err := apply("pp2", "ports: [{name: pg, port: 5432, protocol: tcp, expose: tcp, proxyProtocol: v1}]\n"); err != nil {
		t.Fatal(err)
	}
	if len(*warnings) != 0 {
		t.Errorf("a tcp port with the PROXY header got warnings %q", *warnings)
	}

	// replicas outside autoscale's bounds has no effect: said so.
	*warnings = nil
	if err := apply("as", "replicas: 10\nautoscale: {min: 1, max: 4, targetCPUPercent: 50}\n"); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(*warnings, "\n"); !strings.Contains(got, "replicas 10 lies outside autoscale's 1 to 4") {
		t.Errorf("warnings %q; want one about replicas outside the autoscale bounds", got)
	}
	*warnings = nil
	if err := apply("as2", "replicas: 2\nautoscale: {min: 1, max: 4, targetCPUPercent: 50}\n"); err != nil {
		t.Fatal(err)
	}
	if len(*warnings) != 0 {
		t.Errorf("replicas within the bounds got warnings %q", *warnings)
	}
}
