package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
)

// `gantry delete app .. -n team` deleted namespace team: the client put
// ".." in the path as it was, the server's ServeMux answered 307 to the
// cleaned path /api/v1/namespaces/team, and the client followed it with
// the DELETE.
func TestDeleteOfADotDotNameLeavesTheNamespace(t *testing.T) {
	rs := startRolloutServer(t)
	for i, args := range [][]string{
		{"delete", "app", ".."},
		{"delete", "app/.."},
		{"delete", "instance", ".."},
		{"secret", "rm", ".."},
	} {
		ns := fmt.Sprintf("team%d", i)
		if _, err, _ := rs.run(t, 10*time.Second, "create", "namespace", ns); err != nil {
			t.Fatal(err)
		}
		out, err, _ := rs.run(t, 10*time.Second, append(args, "-n", ns)...)
		got, gerr := client.Get[*v1.Namespace](context.Background(), rs.c, "", ns)
		if errors.Is(gerr, v1.ErrNotFound) || (gerr == nil && got.Metadata.Deleting != nil) {
			t.Errorf("gantry %s -n %s (exit %d, %v, %q) deleted namespace %s", strings.Join(args, " "), ns, exitCode(err), err, out, ns)
		} else if err == nil {
			t.Errorf("gantry %s succeeded: %q", strings.Join(args, " "), out)
		}
	}
}

// get and describe of "." or ".." exited 0 printing the App list (or the
// namespace) decoded as an App.
func TestGetOfADotNameIsRefused(t *testing.T) {
	rs := startRolloutServer(t)
	applyRolloutApp(t, rs, "hello", "hello:v1")
	for _, args := range [][]string{
		{"get", "app", "."},
		{"get", "app", ".."},
		{"describe", "app", "."},
		{"get", "app", "..", "-o", "yaml"},
	} {
		out, err, _ := rs.run(t, 10*time.Second, args...)
		if err == nil || !strings.Contains(err.Error(), "is not a valid name") {
			t.Errorf("gantry %s: %v; printed:\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// Names were escaped twice on the way to the server, so `gantry get app
// héllo` was told `"h%C3%A9llo" is not a valid name`, a name never typed.
func TestBadNamesAreQuotedAsGiven(t *testing.T) {
	rs := startRolloutServer(t)
	for _, name := range []string{"héllo", "a b", "x/y"} {
		_, err, _ := rs.run(t, 10*time.Second, "get", "app", name)
		if err == nil || !strings.Contains(err.Error(), `"`+name+`"`) {
			t.Errorf("get app %q: %v; want an error that quotes the name as given", name, err)
		}
	}
}
