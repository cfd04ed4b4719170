package apiserver_test

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// Deeply nested JSON or YAML bodies, and YAML whose aliases explode (a
// "billion laughs"), are refused with 400, at once.
func TestNestedBodiesRefused(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	bomb := "a: &a [x,x,x,x,x,x,x,x,x,x]\n"
	prev := "a"
	for _, n := range []string{"b", "c", "d", "e", "f", "g", "h", "i", "j"} {
		bomb += n + ": &" + n + " [" + strings.Repeat("*"+prev+",", 9) + "*" + prev + "]\n"
		prev = n
	}
	for name, c := range map[string]struct{ ct, body string }{
		"json depth":  {"application/json", `{"metadata":{"labels":` + strings.Repeat("[", 1<<20) + strings.Repeat("]", 1<<20) + `}}`},
		"yaml depth":  {"application/yaml", "metadata: {labels: " + strings.Repeat("[", 1<<20) + strings.Repeat("]", 1<<20) + "}\n"},
		"yaml laughs": {"application/yaml", bomb},
	} {
		start := time.Now()
		code, body := raw(t, ts, http.MethodPost, "/api/v1/namespaces/default/notifiers", c.ct, []byte(c.body))
		t.Logf("%s: %d in %v: %s", name, code, time.Since(start), trunc(body))
		if code != http.StatusBadRequest || time.Since(start) > 5*time.Second {
			t.Errorf("%s: %d in %v", name, code, time.Since(start))
		}
	}
}
