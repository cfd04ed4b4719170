package server

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/store"
)

// The first start made the admin User, its binding, its token and
// DATA/admin-token one by one, and later starts set up nothing once a
// user existed: a first start stopped after the User (Ctrl-C while etcd
// was slow, a crash) left a cluster nobody could log in to. It is one
// transaction now, and a start after such an interrupted first start
// completes it.
func TestAStartCompletesAnInterruptedFirstStart(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	// The first start got as far as the admin User.
	e, err := store.StartEmbedded(ctx, store.EmbedConfig{Dir: filepath.Join(dir, "etcd"), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(e.Client, "")
	u := &v1.User{TypeMeta: v1.TypeMeta{Kind: "User"}, Metadata: v1.ObjectMeta{Name: auth.AdminUser, Labels: map[string]string{"gantry.dev/role": "cluster-admin"}}}
	if err := st.Create(ctx, u); err != nil {
		t.Fatal(err)
	}
	e.Close()

	cfg := apiOnly(dir)
	s, err := Start(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	toks, _, err := store.List[*v1.Token](ctx, s.Store, store.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s.AdminToken == "" || len(toks) != 1 {
		t.Fatalf("after a first start interrupted after the admin User, the next start has admin token %q and %d tokens in the store; want one", s.AdminToken, len(toks))
	}
	b, err := os.ReadFile(filepath.Join(dir, "admin-token"))
	if err != nil || strings.TrimSpace(string(b)) != s.AdminToken {
		t.Errorf("DATA/admin-token: %q, %v; want the new token", b, err)
	}
	id, err := (&auth.Authenticator{Store: s.Store}).Authenticate(ctx, s.AdminToken)
	if err != nil || id.User != auth.AdminUser {
		t.Fatalf("the new token: %v, %v", id, err)
	}
	if err := (&auth.Authorizer{Store: s.Store}).Authorize(ctx, id, auth.Attributes{Verb: "*", Resource: "*", Namespace: "*"}); err != nil {
		t.Errorf("the completed admin is no cluster admin: %v", err)
	}
}
