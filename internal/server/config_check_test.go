package server

import (
	"strings"
	"testing"
)

// Start refuses, before it starts anything, a configuration whose parts
// would disagree, and gives every part the domains in one form.
func TestConfigCheck(t *testing.T) {
	for _, tc := range []struct {
		name            string
		domain, apps    string
		http, https     string
		wantErr         string
		wantDom, wantAp string
	}{
		{name: "defaults", domain: "gantry.internal", apps: "localhost", http: ":8080", wantDom: "gantry.internal.", wantAp: "localhost."},
		{name: "one form", domain: " Gantry.Internal. ", apps: "LOCALHOST.", http: ":8080", wantDom: "gantry.internal.", wantAp: "localhost."},
		{name: "bad apps domain", domain: "gantry.internal", apps: "my_apps.example", http: ":8080", wantErr: "apps domain"},
		{name: "same domains", domain: "gantry.internal", apps: "Gantry.Internal.", http: ":8080", wantErr: "both"},
		{name: "apps domain hides services", domain: "gantry.internal", apps: "x.svc.gantry.internal", http: ":8080", wantErr: "hide the service names"},
		// HTTPS was not served, and the API believed it was (no warning
		// for tls routes).
		{name: "HTTPS without HTTP", domain: "gantry.internal", apps: "localhost", https: ":8443", wantErr: "give the ingress address too"},
		{name: "HTTPS beside HTTP", domain: "gantry.internal", apps: "localhost", http: ":8080", https: ":8443", wantDom: "gantry.internal.", wantAp: "localhost."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig(t.TempDir())
			cfg.DNS.Domain, cfg.DNS.AppsDomain = tc.domain, tc.apps
			cfg.IngressAddr, cfg.IngressHTTPSAddr = tc.http, tc.https
			err := cfg.check()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("check: %v; want an error saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || cfg.DNS.Domain != tc.wantDom || cfg.DNS.AppsDomain != tc.wantAp {
				t.Fatalf("check: %v, domains %q %q; want %q %q", err, cfg.DNS.Domain, cfg.DNS.AppsDomain, tc.wantDom, tc.wantAp)
			}
		})
	}
}
