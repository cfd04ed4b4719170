package main

import (
	"testing"

	"github.com/gantry-dev/gantry/internal/image"
)

// The CLI's token goes to the cluster registry only: a reference naming
// another registry is used without credentials.
func TestImageCommandsSendTheTokenToTheClusterRegistryOnly(t *testing.T) {
	for _, registry := range []string{"127.0.0.1:5000", "127.0.0.1:5000/"} {
		env := &imageEnv{registry: registry, ns: "team", auth: image.Auth{Token: "gantry-api-token"}}
		for _, tt := range []struct {
			ref       string
			withToken bool
		}{
			{"app:v1", true},
			{"team/app:v1", true},
			{"library/busybox:latest", true},
			{"127.0.0.1:5000/team/app:v1", true},
			{"ghcr.io/someone/app:v1", false},
			{"evil.example/x:v1", false},
			{"127.0.0.1:5001/team/app:v1", false},
			{"localhost:5000/team/app:v1", false},
		} {
			got := env.authFor(env.ref(tt.ref)).Token != ""
			if got != tt.withToken {
				t.Errorf("registry %q, ref %q (%s): token sent %v; want %v", registry, tt.ref, env.ref(tt.ref), got, tt.withToken)
			}
		}
	}
}
