package auth

import (
	"context"
	"errors"
	"strings"
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

// Valid answers for a token by its id, without its secret, from the cache
// while it is fresh: a revoke or a disabled user that the API server
// forgets counts at once, as it does for Authenticate.
func TestValidFollowsRevokeAndDisable(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	for _, u := range []string{"alice", "bob"} {
		if err := s.Create(ctx, &v1.User{TypeMeta: v1.TypeMeta{Kind: "User"}, Metadata: v1.ObjectMeta{Name: u}}); err != nil {
			t.Fatal(err)
		}
	}
	alice, aliceSecret, err := CreateToken(ctx, s, v1.TokenSpec{User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	bob, _, err := CreateToken(ctx, s, v1.TokenSpec{User: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	a := &Authenticator{Store: s}
	if _, err := a.Authenticate(ctx, aliceSecret); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{alice.Metadata.Name, bob.Metadata.Name} {
		if err := a.Valid(ctx, id); err != nil {
			t.Fatalf("Valid(%s) of a working token: %v", id, err)
		}
	}
	if err := a.Valid(ctx, "nosuchtoken"); !errors.Is(err, v1.ErrUnauthorized) {
		t.Errorf("Valid of an unknown id: %v; want 401", err)
	}

	if _, err := store.Mutate(ctx, s, "", alice.Metadata.Name, func(t *v1.Token) error { t.Spec.Revoked = true; return nil }); err != nil {
		t.Fatal(err)
	}
	a.Forget(alice.Metadata.Name)
	if err := a.Valid(ctx, alice.Metadata.Name); !errors.Is(err, v1.ErrUnauthorized) {
		t.Errorf("Valid of a revoked token: %v; want 401", err)
	}
	if _, err := store.Mutate(ctx, s, "", "bob", func(u *v1.User) error { u.Spec.Disabled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	a.ForgetUser("bob")
	if err := a.Valid(ctx, bob.Metadata.Name); !errors.Is(err, v1.ErrUnauthorized) {
		t.Errorf("Valid of a disabled user's token: %v; want 401", err)
	}
	// A secret is still checked by Authenticate after Valid cached an id.
	other, _, err := CreateToken(ctx, s, v1.TokenSpec{User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Valid(ctx, other.Metadata.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(ctx, "gtk_"+other.Metadata.Name+"_"+strings.Repeat("a", 52)); !errors.Is(err, v1.ErrUnauthorized) {
		t.Errorf("a made-up secret for an id Valid cached: %v; want 401", err)
	}
}

// The first start's admin is made in one transaction, the secret saved
// before it commits; later starts make nothing more, and a failed save
// leaves nothing stored.
func TestBootstrap(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	if _, err := Bootstrap(ctx, s, func(string) error { return errors.New("disk full") }); err == nil {
		t.Fatal("a bootstrap whose secret could not be saved succeeded")
	}
	if users, _, err := store.List[*v1.User](ctx, s, store.ListOptions{}); err != nil || len(users) != 0 {
		t.Fatalf("a failed bootstrap left users %v (%v)", users, err)
	}
	var saved string
	tok, err := Bootstrap(ctx, s, func(secret string) error { saved = secret; return nil })
	if err != nil || tok == "" || tok != saved {
		t.Fatalf("first bootstrap: %q, %v (saved %q)", tok, err, saved)
	}
	again, err := Bootstrap(ctx, s, func(string) error { t.Error("a second bootstrap saved a secret"); return nil })
	if err != nil || again != "" {
		t.Fatalf("second bootstrap: %q, %v; want nothing", again, err)
	}
	toks, _, err := store.List[*v1.Token](ctx, s, store.ListOptions{})
	if err != nil || len(toks) != 1 {
		t.Fatalf("tokens after two bootstraps: %d, %v; want 1", len(toks), err)
	}
}
