package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
)

// gantry secret set db password=old password=new (a paste twice, or a
// KEY=VALUE and a --from-file for the same key) kept one of the two
// values in silence and reported success; kubectl create secret refuses a
// key given twice. The value stored may not be the one the user meant.
func TestSecretSetRefusesAKeyGivenTwice(t *testing.T) {
	rs := startRolloutServer(t)
	f := filepath.Join(t.TempDir(), "password")
	os.WriteFile(f, []byte("from-file"), 0o600)
	for _, args := range [][]string{
		{"secret", "set", "db", "password=one", "password=two"},
		{"secret", "set", "db2", "password=literal", "--from-file", "password=" + f},
	} {
		out, err, _ := rs.run(t, 10*time.Second, args...)
		if err == nil {
			s, _ := client.Get[*v1.Secret](context.Background(), rs.c, "default", args[2])
			t.Errorf("%q: exit 0 (%q); stored keys %v: one value was dropped without a word", args, out, s.Keys)
		}
	}
}

// gantry secret set db hunter2 (KEY= left out) printed the value in its
// error, to the terminal and CI logs (review helper-159).
func TestSecretSetDoesNotEchoAValueWithoutKey(t *testing.T) {
	rs := startRolloutServer(t)
	for _, args := range [][]string{
		{"secret", "set", "db", "user=app", "hunter2-secret"},
		{"secret", "set", "db", "=hunter2-secret"},
	} {
		out, err, _ := rs.run(t, 10*time.Second, args...)
		msg := out
		if err != nil {
			msg += err.Error()
		}
		if err == nil || strings.Contains(msg, "hunter2") || !strings.Contains(msg, "KEY=VALUE") {
			t.Errorf("%q: err %v, output %q; want an error naming KEY=VALUE, without the value", args, err, out)
		}
	}
}

// secret get NAME printed a value of several lines as is, so that its
// lines read as keys of their own (review helper-166).
func TestSecretGetDoesNotPrintAValueOfSeveralLinesAsKeys(t *testing.T) {
	rs := startRolloutServer(t)
	f := filepath.Join(t.TempDir(), "pem")
	os.WriteFile(f, []byte("line one\nevil=1\n"), 0o600)
	if out, err, _ := rs.run(t, 10*time.Second, "secret", "set", "tls", "user=app", "--from-file", "cert="+f); err != nil {
		t.Fatalf("secret set: %v %s", err, out)
	}
	one := filepath.Join(t.TempDir(), "one")
	os.WriteFile(one, []byte("hunter2\n"), 0o600)
	if out, err, _ := rs.run(t, 10*time.Second, "secret", "set", "pw", "--from-file", "password="+one); err != nil {
		t.Fatalf("secret set: %v %s", err, out)
	}
	if out, err, _ := rs.run(t, 10*time.Second, "secret", "get", "pw"); err != nil || out != "password=hunter2\n" {
		t.Errorf("secret get pw = %q, %v; a value of one line and its newline is KEY=VALUE", out, err)
	}
	out, err, _ := rs.run(t, 10*time.Second, "secret", "get", "tls")
	if err != nil || strings.Contains(out, "evil=1") || !strings.Contains(out, "user=app") || !strings.Contains(out, "cert=(2 lines: gantry secret get tls cert)") {
		t.Errorf("secret get tls: %v\n%s", err, out)
	}
	out, err, _ = rs.run(t, 10*time.Second, "secret", "get", "tls", "cert")
	if err != nil || out != "line one\nevil=1\n" {
		t.Errorf("secret get tls cert = %q, %v; want the value byte for byte", out, err)
	}
}
