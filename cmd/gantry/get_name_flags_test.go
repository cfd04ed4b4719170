package main

import (
	"strings"
	"testing"
	"time"
)

// `gantry get app hello -A` failed with the API's path advice ("use
// /api/v1/namespaces/NS/apps/hello"), which tells a CLI user nothing.
func TestGetByNameWithAllNamespacesSaysUseN(t *testing.T) {
	rs := startRolloutServer(t)
	applyRolloutApp(t, rs, "hello", "hello:v1")
	_, err, _ := rs.run(t, 10*time.Second, "get", "app", "hello", "-A")
	if err == nil || strings.Contains(err.Error(), "/api/v1/") || !strings.Contains(err.Error(), "use -n NS") {
		t.Errorf("get app hello -A: %v; want a refusal that says to use -n", err)
	}
}

// `gantry get app hello -l tier=db` dropped the selector and showed hello
// whatever its labels, so "does hello carry tier=db" was answered yes.
func TestGetByNameRefusesASelector(t *testing.T) {
	rs := startRolloutServer(t)
	applyRolloutApp(t, rs, "hello", "hello:v1")
	out, err, _ := rs.run(t, 10*time.Second, "get", "app", "hello", "-l", "tier=db", "-o", "name")
	if err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("get app hello -l tier=db: %v; printed:\n%s", err, out)
	}
}
