package apiserver_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/auth"
)

// Disabling a user stops their tokens; enabling them again gives every
// token back with all of their rights, which may be a cluster admin's. A
// role that grants `update users` (bound in "*") let its holder lift a
// cluster admin's disable; only a cluster admin may now. Disabling, and
// other changes to a user, still take only `update users`.
func TestEnablingADisabledUserTakesAClusterAdmin(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	applyManifest(t, ts, "kind: Role\nname: user-desk\nrules: [{verbs: [get, list, create, update], resources: [users]}]\n")
	applyManifest(t, ts, "kind: User\nname: desk\n")
	applyManifest(t, ts, "kind: RoleBinding\nname: desk-all\nuser: desk\nrole: user-desk\nnamespace: '*'\n")
	_, desk, err := auth.CreateToken(context.Background(), ts.Store, v1.TokenSpec{User: "desk"})
	if err != nil {
		t.Fatal(err)
	}
	_, nsAdmin := govUser(t, ts, "nadia", "admin", "default")
	put := func(token, name, body string) (int, string) {
		t.Helper()
		return rawAs(t, ts, token, http.MethodPut, "/api/v1/users/"+name+"?apply=true", "application/yaml", []byte(body))
	}
	tests := []struct {
		name    string
		token   string
		user    string
		before  string // the user as stored before, by the cluster admin
		after   string
		want    int
		message string
	}{
		{"a user-desk role may not enable a disabled user", desk, "mallory",
			"kind: User\nmetadata: {name: mallory}\nspec: {disabled: true}\n",
			"kind: User\nmetadata: {name: mallory}\nspec: {fullName: Mallory}\n", http.StatusForbidden, "only a cluster admin may enable a disabled user"},
		{"a namespace admin may not enable a disabled user", nsAdmin, "nemo",
			"kind: User\nmetadata: {name: nemo}\nspec: {disabled: true}\n",
			"kind: User\nmetadata: {name: nemo}\n", http.StatusForbidden, `user \"nadia\" may not apply users`},
		{"a user-desk role may disable a user", desk, "dora",
			"kind: User\nmetadata: {name: dora}\n",
			"kind: User\nmetadata: {name: dora}\nspec: {disabled: true}\n", http.StatusOK, ""},
		{"a user-desk role may edit a disabled user who stays disabled", desk, "ed",
			"kind: User\nmetadata: {name: ed}\nspec: {disabled: true}\n",
			"kind: User\nmetadata: {name: ed}\nspec: {disabled: true, fullName: Ed}\n", http.StatusOK, ""},
		{"a cluster admin may enable a disabled user", ts.Token, "cleo",
			"kind: User\nmetadata: {name: cleo}\nspec: {disabled: true}\n",
			"kind: User\nmetadata: {name: cleo}\n", http.StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, out := put(ts.Token, tt.user, tt.before); code >= 300 {
				t.Fatalf("store %s: %d %s", tt.user, code, trunc(out))
			}
			code, out := put(tt.token, tt.user, tt.after)
			if code != tt.want || !strings.Contains(out, tt.message) {
				t.Fatalf("apply %q: %d %s; want %d containing %q", tt.after, code, trunc(out), tt.want, tt.message)
			}
		})
	}
}
