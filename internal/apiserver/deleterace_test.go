package apiserver_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
)

// Apps created while their namespace is being deleted must not outlive
// it: they would come back with a later namespace of the same name.
func TestNamespaceDeleteLeavesNoOrphans(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	ctx := context.Background()
	c := ts.client(t, ts.Token)
	for round := 0; round < 5; round++ {
		ns := &v1.Namespace{TypeMeta: v1.TypeMeta{Kind: "Namespace"}, Metadata: v1.ObjectMeta{Name: "doomed"}}
		if err := c.Create(ctx, ns); err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				a := newApp("a"+strconv.Itoa(round)+"-"+strconv.Itoa(i), "hello:v1")
				a.Metadata.Namespace = "doomed"
				c.Create(ctx, a)
			}
		}()
		time.Sleep(20 * time.Millisecond)
		if _, err := c.Delete(ctx, "Namespace", "", "doomed"); err != nil {
			t.Fatal(err)
		}
		close(stop)
		<-done
		// A create that read the namespace before the delete may land
		// after it; the sweeps after the delete remove it.
		deadline := time.Now().Add(20 * time.Second)
		for {
			left, _, err := store.List[*v1.App](ctx, ts.Store, store.ListOptions{Namespace: "doomed"})
			if err != nil {
				t.Fatal(err)
			}
			if len(left) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: namespace doomed is deleted, but %d app(s) in it remain, e.g. %s", round, len(left), left[0].Metadata.Name)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// What a namespace of the same name gets right after is its own.
	ns := &v1.Namespace{TypeMeta: v1.TypeMeta{Kind: "Namespace"}, Metadata: v1.ObjectMeta{Name: "doomed"}}
	if err := c.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	keeper := newApp("keeper", "hello:v1")
	keeper.Metadata.Namespace = "doomed"
	if err := c.Create(ctx, keeper); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // past the first sweep after the last delete
	if _, err := store.Get[*v1.App](ctx, ts.Store, "doomed", "keeper"); err != nil {
		t.Fatalf("an App of the namespace made again after the delete: %v", err)
	}
}

// Writes into a namespace being deleted are refused, not stored to be
// swept away.
func TestWritesIntoANamespaceBeingDeletedAreRefused(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	ctx := context.Background()
	now := time.Now()
	ns := &v1.Namespace{TypeMeta: v1.TypeMeta{Kind: "Namespace"}, Metadata: v1.ObjectMeta{Name: "going", Deleting: &now}}
	if err := ts.Store.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{
		`{"kind":"App","metadata":{"name":"a"},"spec":{"image":"a:v1"}}`,
		`{"kind":"Secret","metadata":{"name":"s"},"stringData":{"k":"v"}}`,
	} {
		var o struct{ Kind string }
		json.Unmarshal([]byte(body), &o)
		path := "/api/v1/namespaces/going/" + strings.ToLower(o.Kind) + "s"
		code, got := raw(t, ts, "POST", path, "application/json", []byte(body))
		if code != 409 || !strings.Contains(got, "being deleted") {
			t.Errorf("POST %s = %d %s; want 409 saying the namespace is being deleted", path, code, trunc(got))
		}
	}
}

// A token created while its user is being deleted must not outlive the
// user: it would work again for a later user of the same name.
func TestUserDeleteLeavesNoTokens(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	ctx := context.Background()
	c := ts.client(t, ts.Token)
	for round := 0; round < 10; round++ {
		u := &v1.User{TypeMeta: v1.TypeMeta{Kind: "User"}, Metadata: v1.ObjectMeta{Name: "bob"}}
		if err := c.Create(ctx, u); err != nil {
			t.Fatal(err)
		}
		stop, done := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				default:
				}
				tok := &v1.Token{TypeMeta: v1.TypeMeta{Kind: "Token"}, Spec: v1.TokenSpec{User: "bob"}}
				c.Create(ctx, tok)
			}
		}()
		time.Sleep(10 * time.Millisecond)
		if _, err := c.Delete(ctx, "User", "", "bob"); err != nil {
			t.Fatal(err)
		}
		close(stop)
		<-done
		toks, _, err := store.List[*v1.Token](ctx, ts.Store, store.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range toks {
			if tk.Spec.User == "bob" {
				t.Fatalf("round %d: user bob is deleted, but token %s of bob remains", round, tk.Metadata.Name)
			}
		}
	}
}
