package apiserver_test

import (
	"net/http"
	"strings"
	"testing"
)

// A Role with a verb or resource no request is authorized for (a typo:
// "apss", "frobnicate") was stored with 201 and silently granted nothing.
// It is still stored (as under Kubernetes), with a Warning naming it.
func TestRoleWithUnknownVerbsOrResourcesIsWarnedOf(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	for _, c := range []struct {
		name, rules string
		warn        []string // what the warnings must name; none if empty
	}{
		{"typo", `[{"verbs":["get","frobnicate"],"resources":["apss","instances/logs"]}]`, []string{`verb \"frobnicate\"`, `resource \"apss\"`}},
		{"badsub", `[{"verbs":["get"],"resources":["apps/nope","audit/*"]}]`, []string{`resource \"apps/nope\"`}},
		{"good", `[{"verbs":["get","list","watch","apply","pull","push"],"resources":["apps","apps/scale","apps/*","instances/exec","images","metrics","audit/export","registry/gc","secretkeys","nodes/register","rolebindings"]},{"verbs":["*"],"resources":["*"]}]`, nil},
	} {
		body := `{"kind":"Role","metadata":{"name":"` + c.name + `"},"spec":{"rules":` + c.rules + `}}`
		code, out, h := request(t, ts, ts.Token, http.MethodPost, "/api/v1/roles", "application/json", []byte(body))
		if code != http.StatusCreated {
			t.Fatalf("role %s: %d %s, want 201", c.name, code, trunc(out))
		}
		got := strings.Join(h.Values("Warning"), "\n")
		if len(c.warn) == 0 && got != "" {
			t.Errorf("role %s earned warnings: %s", c.name, got)
		}
		for _, w := range c.warn {
			if !strings.Contains(got, w) {
				t.Errorf("role %s: warnings %q do not name %s", c.name, got, w)
			}
		}
	}
}
