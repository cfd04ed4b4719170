package registrytest

import (
	"context"
	"errors"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

func TestOneToken(t *testing.T) {
	a := OneToken{Token: "right", User: "tester"}
	for _, tt := range []struct {
		name, token string
		wantErr     bool
	}{
		{"the token is its user", "right", false},
		{"another token is unauthorized", "wrong", true},
		{"a prefix of the token is unauthorized", "righ", true},
		{"no token is unauthorized", "", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			id, err := a.Authenticate(context.Background(), tt.token)
			if tt.wantErr {
				if !errors.Is(err, v1.ErrUnauthorized) {
					t.Fatalf("err = %v, want ErrUnauthorized", err)
				}
				return
			}
			if err != nil || id.User != "tester" {
				t.Fatalf("Authenticate = %+v, %v", id, err)
			}
		})
	}
}
