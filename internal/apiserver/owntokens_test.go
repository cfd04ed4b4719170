package apiserver_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
)

// docs/guide.md ("Users, tokens and roles") and createToken's own error
// message say anyone may make tokens for themselves; only a token for
// another user takes a cluster admin. A developer bound in one namespace
// was refused by the authorizer before createToken ran (403), since
// "tokens" is cluster-scoped and only bindings in "*" grant cluster
// resources. They may now create, list and revoke their own tokens, and
// still nothing of anyone else's.
func TestUserManagesTheirOwnTokensOnly(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	govNamespace(t, ts, "team", nil)
	alice, tok := govUser(t, ts, "alice", "developer", "team")
	govUser(t, ts, "bob", "developer", "team")
	ctx := context.Background()
	as := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	mine, err := alice.CreateToken(ctx, v1.TokenSpec{Description: "ci", Expires: &exp})
	if err != nil {
		t.Fatalf("alice creating a token for herself: %v; the guide says anyone may make tokens for themselves", err)
	}
	if mine.Spec.User != "alice" {
		t.Errorf("alice's token is for %q", mine.Spec.User)
	}
	if _, err := alice.CreateToken(ctx, v1.TokenSpec{User: "bob"}); err == nil || !strings.Contains(err.Error(), "only a cluster admin") {
		t.Errorf("alice creating a token for bob: %v; want 403", err)
	}

	objs, _, err := alice.List(ctx, "Token", "", client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) < 2 {
		t.Errorf("alice lists %d tokens; want hers (at least 2)", len(objs))
	}
	for _, o := range objs {
		if u := o.(*v1.Token).Spec.User; u != "alice" {
			t.Errorf("alice's list shows a token of %q", u)
		}
	}

	// Someone else's token, or none, is the authorizer's 403.
	adminID := strings.Split(ts.Token, "_")[1]
	if code, body := raw(t, ts, "GET", "/api/v1/tokens/"+adminID, "", nil); code != 200 {
		t.Fatalf("setup: the admin's token %s: %d %.200s", adminID, code, body)
	}
	for _, name := range []string{adminID, "nosuchtoken"} {
		for _, m := range []string{"GET", "DELETE"} {
			if code, body := as(m, "/api/v1/tokens/"+name, ""); code != 403 {
				t.Errorf("alice: %s token %s = %d %.200s; want 403", m, name, code, body)
			}
		}
	}
	if code, body := as("GET", "/api/v1/tokens?watch=true", ""); code != 403 {
		t.Errorf("alice watching tokens = %d %.200s; want 403", code, body)
	}

	// Her own: revoked, not extended, not revived.
	got, err := client.Get[*v1.Token](ctx, alice, "", mine.Metadata.Name)
	if err != nil {
		t.Fatalf("alice reading her token: %v", err)
	}
	later := exp.Add(24 * time.Hour)
	longer := *got
	longer.Spec.Expires = &later
	if err := alice.Update(ctx, &longer); err == nil {
		t.Error("alice extended her token's expiry")
	}
	got.Spec.Revoked = true
	if err := alice.Update(ctx, got); err != nil {
		t.Fatalf("alice revoking her token: %v", err)
	}
	got.Spec.Revoked = false
	b, _ := json.Marshal(got)
	if code, body := as("PUT", "/api/v1/tokens/"+got.Metadata.Name, string(b)); code != 403 {
		t.Errorf("alice reviving her revoked token = %d %.200s; want 403", code, body)
	}
	if code, body := as("DELETE", "/api/v1/tokens/"+got.Metadata.Name, ""); code != 200 {
		t.Errorf("alice deleting her token = %d %.200s; want 200", code, body)
	}
}
