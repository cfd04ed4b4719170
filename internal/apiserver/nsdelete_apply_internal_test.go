package apiserver

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

type allowAll struct{}

func (allowAll) Authenticate(ctx context.Context, tok string) (*auth.Identity, error) {
	return &auth.Identity{User: "admin"}, nil
}
func (allowAll) Authorize(ctx context.Context, id *auth.Identity, a auth.Attributes) error {
	return nil
}

// A namespace being deleted refuses writes into it (409). An apply of the
// namespace itself was answered 200 "configured", and the delete went on
// all the same (a delete stopped half-way is resumed at the namespace's
// new revision): the namespace the caller was told is configured was
// gone. A change is refused now; an apply that changes nothing is not.
func TestApplyOfANamespaceBeingDeletedIsRefused(t *testing.T) {
	e := storetest.EmbeddedIn(t, t.TempDir())
	st := store.New(e.Client, "")
	s := New(Config{}, st, allowAll{}, allowAll{}, slog.New(slog.DiscardHandler))
	ctx := context.Background()
	at := time.Now().UTC().Add(-2 * resumeDeleteAfter) // a delete stopped half-way
	ns := &v1.Namespace{TypeMeta: v1.TypeMeta{Kind: "Namespace"}, Metadata: v1.ObjectMeta{Name: "team", Deleting: &at}}
	if err := st.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	for _, c := range []struct {
		body, query string
		want        int
	}{
		{`{"kind":"Namespace","metadata":{"name":"team","labels":{"owner":"me"}}}`, "", http.StatusConflict},
		{`{"kind":"Namespace","metadata":{"name":"team","labels":{"owner":"me"}}}`, "&dryRun=true", http.StatusConflict},
		{`{"kind":"Namespace","metadata":{"name":"team"}}`, "", http.StatusOK},
	} {
		req, _ := http.NewRequest("PUT", srv.URL+"/api/v1/namespaces/team?apply=true"+c.query, bytes.NewReader([]byte(c.body)))
		req.Header.Set("Authorization", "Bearer x")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("apply%s of %s to namespace team while it is being deleted = %d %q; want %d", c.query, c.body, resp.StatusCode, resp.Header.Get("X-Gantry-Result"), c.want)
		}
	}
	if err := s.sweep(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Get[*v1.Namespace](ctx, st, "", "team"); !errors.Is(err, v1.ErrNotFound) {
		t.Errorf("the resumed delete left namespace team: %v", err)
	}
}
