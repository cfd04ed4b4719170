package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// The ls commands printed a table only: `gantry token ls -o json` was a
// flag error, though the guide said most commands take -o. They take
// table, json, yaml or name now, and refuse another format before asking
// the server.
func TestLsCommandsTakeOutputFormats(t *testing.T) {
	rs := startRolloutServer(t)
	sec := &v1.Secret{TypeMeta: v1.TypeMeta{Kind: "Secret"}, Metadata: v1.ObjectMeta{Name: "db", Namespace: "default"},
		Data: map[string][]byte{"password": []byte("s3cret")}}
	if err := rs.c.Create(context.Background(), sec); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		kind string
		name string
	}{
		{[]string{"user", "ls"}, "User", "admin"},
		{[]string{"role", "ls"}, "RoleBinding", ""},
		{[]string{"token", "ls"}, "Token", ""},
		{[]string{"secret", "ls"}, "Secret", "db"},
		{[]string{"join-token", "ls"}, "JoinToken", ""},
	} {
		out, err, _ := rs.run(t, 10*time.Second, append(c.args, "-o", "json")...)
		if err != nil {
			t.Fatalf("%s -o json: %v\n%s", strings.Join(c.args, " "), err, out)
		}
		var list struct {
			Kind  string            `json:"kind"`
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal([]byte(out), &list); err != nil || list.Kind != c.kind+"List" {
			t.Errorf("%s -o json: kind %q, %v\n%s", strings.Join(c.args, " "), list.Kind, err, out)
		}
		if c.name != "" && !strings.Contains(out, `"name": "`+c.name+`"`) {
			t.Errorf("%s -o json lacks %s:\n%s", strings.Join(c.args, " "), c.name, out)
		}
		if _, err, _ := rs.run(t, 10*time.Second, append(c.args, "-o", "xml")...); err == nil || !strings.Contains(err.Error(), "table, json, yaml or name") {
			t.Errorf("%s -o xml: %v, want the formats named", strings.Join(c.args, " "), err)
		}
	}
	out, err, _ := rs.run(t, 10*time.Second, "secret", "ls", "-o", "yaml")
	if err != nil || !strings.Contains(out, "name: db") || strings.Contains(out, "s3cret") || strings.Contains(out, "czNjcmV0") {
		t.Errorf("secret ls -o yaml: %v\n%s", err, out)
	}
	if out, err, _ := rs.run(t, 10*time.Second, "secret", "ls", "-o", "name"); err != nil || strings.TrimSpace(out) != "secret/db" {
		t.Errorf("secret ls -o name: %v %q", err, out)
	}
	if out, err, _ := rs.run(t, 10*time.Second, "secret", "ls"); err != nil || !strings.Contains(out, "password") || !strings.Contains(out, "KEYS") {
		t.Errorf("secret ls (table): %v\n%s", err, out)
	}
}

// An empty list says so on the command's error output (it went to the
// process's stderr, past what a caller of the command set), and prints
// nothing on its output.
func TestAnEmptyLsSaysSoOnItsErrorOutput(t *testing.T) {
	rs := startRolloutServer(t)
	root := newRootCmd()
	var out, errOut strings.Builder
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs([]string{"--config", t.TempDir() + "/none", "--server", rs.url, "--token", rs.token, "secret", "ls"})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	if out.String() != "" || !strings.Contains(errOut.String(), "No resources found.") {
		t.Errorf("secret ls with none: output %q, error output %q", out.String(), errOut.String())
	}
}
