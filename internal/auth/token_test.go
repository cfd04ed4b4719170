package auth

import (
	"context"
	"errors"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// A token revoked while a lookup of it is between its store read and its
// caching is not cached as valid: the next request reads the store again
// and is refused, rather than passing for the cache's lifetime.
func TestRevokeDuringALookupIsNotCachedOver(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	if err := s.Create(ctx, &v1.User{TypeMeta: v1.TypeMeta{Kind: "User"}, Metadata: v1.ObjectMeta{Name: "alice"}}); err != nil {
		t.Fatal(err)
	}
	tok, secret, err := CreateToken(ctx, s, v1.TokenSpec{User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	a := &Authenticator{Store: s}
	afterLookup = func() {
		afterLookup = nil
		// The revoke lands, and the API server forgets the token.
		if _, err := store.Mutate(ctx, s, "", tok.Metadata.Name, func(t *v1.Token) error { t.Spec.Revoked = true; return nil }); err != nil {
			t.Error(err)
		}
		a.Forget(tok.Metadata.Name)
	}
	defer func() { afterLookup = nil }()
	if _, err := a.Authenticate(ctx, secret); err != nil {
		t.Fatalf("the lookup that raced the revoke: %v (it read the token before it)", err)
	}
	if _, err := a.Authenticate(ctx, secret); !errors.Is(err, v1.ErrUnauthorized) {
		t.Fatalf("after the revoke: %v; want 401", err)
	}
}
