package apiserver_test

import (
	"context"
	"encoding/json"
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
		return rawAs(t, ts, tok, method, path, "application/json", []byte(body))
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

// A role that grants `update tokens` everywhere (a help desk that may
// revoke leaked tokens) lets its holder revoke an admin's token, not
// lift the revocation or extend its expiry: either would hand them a
// token with all of the admin's rights, as only a cluster admin may.
func TestUpdateTokensRoleMayRevokeButNotRevive(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	ctx := context.Background()
	admin := ts.client(t, ts.Token)
	role, err := v1.DecodeManifest([]byte("kind: Role\nname: token-desk\nrules: [{verbs: [get, list, update], resources: [tokens]}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Apply(ctx, role); err != nil {
		t.Fatal(err)
	}
	helper, _ := clusterUser(t, ts, "helper", "token-desk")

	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	leaked, err := admin.CreateToken(ctx, v1.TokenSpec{Description: "leaked", Expires: &exp})
	if err != nil {
		t.Fatal(err)
	}
	whoami := func() int {
		code, _ := rawAs(t, ts, leaked.Secret, "GET", "/api/v1/whoami", "", nil)
		return code
	}
	tok, err := client.Get[*v1.Token](ctx, helper, "", leaked.Metadata.Name)
	if err != nil {
		t.Fatalf("helper reading the admin's token: %v", err)
	}
	later := exp.Add(24 * time.Hour)
	longer := *tok
	longer.Spec.Expires = &later
	if err := helper.Update(ctx, &longer); err == nil || !strings.Contains(err.Error(), "cluster admin") {
		t.Errorf("helper extending the admin's token: %v; want 403 naming a cluster admin", err)
	}
	tok.Spec.Revoked = true
	if err := helper.Update(ctx, tok); err != nil {
		t.Fatalf("helper revoking the admin's token: %v", err)
	}
	if code := whoami(); code != http.StatusUnauthorized {
		t.Fatalf("the revoked token: whoami %d; want 401", code)
	}

	tok, err = client.Get[*v1.Token](ctx, helper, "", leaked.Metadata.Name)
	if err != nil {
		t.Fatal(err)
	}
	tok.Spec.Revoked = false
	if err := helper.Update(ctx, tok); err == nil || !strings.Contains(err.Error(), "stays revoked") {
		t.Errorf("helper lifting the revocation: %v; want 403", err)
	}
	if code := whoami(); code != http.StatusUnauthorized {
		t.Errorf("after the helper's attempt the revoked token answers whoami %d; want 401", code)
	}

	// A cluster admin may.
	tok, err = client.Get[*v1.Token](ctx, admin, "", leaked.Metadata.Name)
	if err != nil {
		t.Fatal(err)
	}
	tok.Spec.Revoked = false
	tok.Spec.Expires = &later
	if err := admin.Update(ctx, tok); err != nil {
		t.Fatalf("a cluster admin lifting the revocation: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for whoami() != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("the token lifted by a cluster admin still does not authenticate")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Disabling a user locks her out at once, as revoking a token does: her
// tokens verified a moment before were served from the cache for its TTL.
func TestDisabledUserIsLockedOutAtOnce(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	govNamespace(t, ts, "team", nil)
	_, tok := govUser(t, ts, "mallory", "developer", "team")
	if code, body := rawAs(t, ts, tok, "GET", "/api/v1/whoami", "", nil); code != http.StatusOK {
		t.Fatalf("setup: whoami %d %.200s", code, body)
	}
	admin := ts.client(t, ts.Token)
	ctx := context.Background()
	u, err := client.Get[*v1.User](ctx, admin, "", "mallory")
	if err != nil {
		t.Fatal(err)
	}
	u.Spec.Disabled = true
	if err := admin.Update(ctx, u); err != nil {
		t.Fatal(err)
	}
	if code, _ := rawAs(t, ts, tok, "GET", "/api/v1/whoami", "", nil); code != http.StatusUnauthorized {
		t.Errorf("the disabled user's token right after the update: whoami %d; want 401", code)
	}
}
