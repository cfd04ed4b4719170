package main

import (
	"io"
	"strings"
	"testing"
)

// Bad domain and ingress flags are refused before anything starts, with
// the flag named. A bad apps domain used to be reported, after etcd, the
// API and the load balancer had started, as "dns: dns: apps domain: …";
// an HTTPS address without the HTTP one was ignored without a word.
func TestUpRefusesBadDomainAndIngressFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--apps-domain", "my_apps.example"}, `--apps-domain "my_apps.example": `},
		{[]string{"--cluster-domain", "."}, `--cluster-domain ".": `},
		{[]string{"--cluster-domain", "gantry.internal", "--apps-domain", "Gantry.Internal"}, "--cluster-domain \"gantry.internal\", --apps-domain \"Gantry.Internal\": cluster domain and apps domain are both"},
		{[]string{"--ingress-addr", "", "--ingress-https-addr", ":8443"}, "--ingress-https-addr :8443 needs --ingress-addr"},
	} {
		root := newRootCmd()
		root.SetArgs(append([]string{"up", "--data-dir", t.TempDir()}, tc.args...))
		root.SetOut(io.Discard)
		root.SetErr(io.Discard)
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("gantry up %s: %v; want an error starting %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}
