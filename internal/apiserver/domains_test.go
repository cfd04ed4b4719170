package apiserver_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/apiserver"
	"github.com/gantry-dev/gantry/internal/apiserver/apiservertest"
	"github.com/gantry-dev/gantry/internal/store"
)

// The domains are matched lower-cased and without the root's dot however
// they were given. An apps domain of "localhost." made every default host
// look foreign to the API, so an App of another namespace could take
// web.default.localhost with a route, and the load balancer, which trims
// the dot, sent it that host's traffic. And an apps domain inside the
// cluster domain (which DNS serves) had every route under it refused
// with a message that recommended the very host it refused.
func TestDomainsAreMatchedInOneForm(t *testing.T) {
	for _, tc := range []struct {
		cfg   apiserver.Config
		ns    string
		host  string
		code  int // 0 when admitted
		want  string
		label string
	}{
		{apiserver.Config{AppsDomain: "localhost."}, "evil", "web.default.localhost", http.StatusConflict, "is the default host of app web in namespace default", "trailing dot"},
		{apiserver.Config{AppsDomain: " LocalHost"}, "evil", "web.default.localhost", http.StatusConflict, "is the default host of app web in namespace default", "spaces and capitals"},
		{apiserver.Config{AppsDomain: "apps.gantry.internal", ServiceDomain: "gantry.internal."}, "default", "web.default.apps.gantry.internal", 0, "", "apps domain inside the cluster domain"},
		{apiserver.Config{AppsDomain: "apps.gantry.internal", ServiceDomain: "gantry.internal."}, "default", "db.gantry.internal", http.StatusBadRequest, "the cluster's service domain", "the rest of the cluster domain"},
		// The other way round, DNS answers the cluster domain's names
		// as services: they stay refused.
		{apiserver.Config{AppsDomain: "example.com", ServiceDomain: "gantry.example.com"}, "default", "db.svc.gantry.example.com", http.StatusBadRequest, "the cluster's service domain", "cluster domain inside the apps domain"},
	} {
		t.Run(tc.label, func(t *testing.T) {
			ts := &testServer{apiservertest.StartConfig(t, t.TempDir(), "127.0.0.1:0", tc.cfg)}
			ctx := context.Background()
			if err := ts.Store.Create(ctx, &v1.Namespace{TypeMeta: v1.TypeMeta{Kind: "Namespace"}, Metadata: v1.ObjectMeta{Name: "evil"}}); err != nil && !errors.Is(err, v1.ErrAlreadyExists) {
				t.Fatal(err)
			}
			c := ts.client(t, ts.Token)
			for _, m := range []string{
				"kind: App\nname: web\nnamespace: default\nimage: web:v1\nports: [{port: 8080}]\n",
				"kind: App\nname: taker\nnamespace: " + tc.ns + "\nimage: web:v1\nports: [{port: 8080}]\nroutes: [{host: " + tc.host + "}]\n",
			} {
				o, err := v1.DecodeManifest([]byte(m))
				if err != nil {
					t.Fatal(err)
				}
				_, err = c.Apply(ctx, o)
				if !strings.Contains(m, "taker") {
					if err != nil {
						t.Fatal(err)
					}
					continue
				}
				var se *v1.StatusError
				switch {
				case tc.code == 0 && err != nil:
					t.Fatalf("route %s: %v; want it admitted", tc.host, err)
				case tc.code != 0 && (!errors.As(err, &se) || se.Status.Code != tc.code || !strings.Contains(fmt.Sprint(se.Status), tc.want)):
					t.Fatalf("route %s: %v; want %d saying %q", tc.host, err, tc.code, tc.want)
				}
			}
			if tc.code != 0 {
				if _, err := store.Get[*v1.App](ctx, ts.Store, tc.ns, "taker"); !errors.Is(err, v1.ErrNotFound) {
					t.Fatalf("the refused App was stored (%v)", err)
				}
			}
		})
	}
}
