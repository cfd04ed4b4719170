package auth

import (
	"context"
	"errors"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// An earlier version could stop its first start after storing the admin
// User. Bootstrap completes such a start, and only such a start: once a
// user holds a token or someone granted a role, an admin without tokens
// was made so on purpose and a restart must not mint it a new one.
func TestBootstrapCompletesOnlyAnInterruptedFirstStart(t *testing.T) {
	admin := func() *v1.User {
		return &v1.User{TypeMeta: v1.TypeMeta{Kind: "User"}, Metadata: v1.ObjectMeta{Name: AdminUser, Labels: map[string]string{"gantry.dev/role": "cluster-admin"}}}
	}
	user := func(name string) *v1.User {
		return &v1.User{TypeMeta: v1.TypeMeta{Kind: "User"}, Metadata: v1.ObjectMeta{Name: name}}
	}
	tests := []struct {
		name    string
		seed    func(ctx context.Context, s *store.Store) error
		wantNew bool
	}{
		{"only the admin user was stored", func(ctx context.Context, s *store.Store) error {
			return s.Create(ctx, admin())
		}, true},
		{"the admin user and its binding were stored", func(ctx context.Context, s *store.Store) error {
			return s.Txn().Create(admin()).Create(adminBinding()).Commit(ctx)
		}, true},
		{"node credentials exist but no user token", func(ctx context.Context, s *store.Store) error {
			if err := s.Create(ctx, admin()); err != nil {
				return err
			}
			_, _, err := CreateToken(ctx, s, v1.TokenSpec{User: "node:n1", Node: "n1"})
			return err
		}, true},
		{"another user holds a token", func(ctx context.Context, s *store.Store) error {
			if err := s.Txn().Create(admin()).Create(adminBinding()).Create(user("ops")).Commit(ctx); err != nil {
				return err
			}
			_, _, err := CreateToken(ctx, s, v1.TokenSpec{User: "ops"})
			return err
		}, false},
		{"the admin's tokens were deleted after a role was granted", func(ctx context.Context, s *store.Store) error {
			b := &v1.RoleBinding{TypeMeta: v1.TypeMeta{Kind: "RoleBinding"}, Metadata: v1.ObjectMeta{Name: "ops-admin"},
				Spec: v1.RoleBindingSpec{User: "ops", Role: RoleClusterAdmin, Namespace: "*"}}
			return s.Txn().Create(admin()).Create(adminBinding()).Create(user("ops")).Create(b).Commit(ctx)
		}, false},
		{"the admin is not the first start's", func(ctx context.Context, s *store.Store) error {
			return s.Create(ctx, user(AdminUser))
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := storetest.New(t)
			ctx := context.Background()
			if err := tt.seed(ctx, s); err != nil {
				t.Fatal(err)
			}
			got, err := Bootstrap(ctx, s, nil)
			if err != nil {
				t.Fatalf("Bootstrap: %v", err)
			}
			if (got != "") != tt.wantNew {
				t.Fatalf("Bootstrap made a token: %v, want %v", got != "", tt.wantNew)
			}
			if !tt.wantNew {
				return
			}
			if _, err := (&Authenticator{Store: s}).Authenticate(ctx, got); err != nil {
				t.Errorf("the new admin token does not authenticate: %v", err)
			}
			if _, err := store.Get[*v1.RoleBinding](ctx, s, "", adminBinding().Metadata.Name); err != nil {
				t.Errorf("the admin's binding: %v", err)
			}
		})
	}
}

// A token whose user cannot be read because of the store is not called
// invalid (a 401 would send the client to log in again); the store's
// error comes back as it is.
func TestAuthenticateReportsAStoreErrorReadingTheUser(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	if err := s.Create(ctx, &v1.User{TypeMeta: v1.TypeMeta{Kind: "User"}, Metadata: v1.ObjectMeta{Name: "alice"}}); err != nil {
		t.Fatal(err)
	}
	_, secret, err := CreateToken(ctx, s, v1.TokenSpec{User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client().Put(ctx, s.Key(store.KindFor[*v1.User](), "", "alice"), "{not json"); err != nil {
		t.Fatal(err)
	}
	_, err = (&Authenticator{Store: s}).Authenticate(ctx, secret)
	if err == nil || errors.Is(err, ErrInvalidToken) || errors.Is(err, v1.ErrUnauthorized) {
		t.Fatalf("Authenticate with an unreadable user: %v; want the store's error", err)
	}
}
