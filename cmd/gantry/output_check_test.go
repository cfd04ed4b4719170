package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeAPI answers every request with body and counts the POSTs.
func fakeAPI(t *testing.T, body string) (string, *atomic.Int32) {
	var posts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			posts.Add(1)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &posts
}

// runAgainst runs the CLI against the server at url, for at most 5s.
func runAgainst(t *testing.T, url string, args ...string) (string, error) {
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"--config", filepath.Join(t.TempDir(), "none"), "--server", url, "--token", "x"}, args...))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

// `gantry audit -o yaml` (or a typo like -o jsn) printed the table and
// exited 0: a script that parses the output got a table.
func TestAuditRefusesAnUnknownOutputFormat(t *testing.T) {
	url, _ := fakeAPI(t, `{"Items":[{"Seq":1,"User":"alice","Verb":"get","Status":200}]}`)
	for _, o := range []string{"yaml", "jsn", "wide"} {
		out, err := runAgainst(t, url, "audit", "-o", o)
		if err == nil || !strings.Contains(err.Error(), "unknown output format") {
			t.Errorf("audit -o %s: %v, printed:\n%s", o, err, out)
		}
	}
	if _, err := runAgainst(t, url, "audit", "-o", "json"); err != nil {
		t.Errorf("audit -o json: %v", err)
	}
}

// `gantry events -w -o bogus` printed tables instead of refusing, as
// `gantry events -o bogus` and `gantry get events -w -o bogus` do.
func TestEventsWatchRefusesAnUnknownFormat(t *testing.T) {
	rs := startRolloutServer(t)
	out, err, _ := rs.run(t, 2*time.Second, "events", "-w", "-o", "bogus")
	if err == nil || !strings.Contains(err.Error(), "unknown output format") {
		t.Errorf("events -w -o bogus: %v, printed:\n%s", err, out)
	}
}

// A bad -o was refused only after the work was done: `gantry registry gc
// -o wide` ran the collection, then exited 1 and lost its report;
// `gantry notifier test chat -o txt` sent the message.
func TestOutputFormatIsCheckedBeforeTheSideEffect(t *testing.T) {
	url, posts := fakeAPI(t, `{"bytesFreed":1,"Delivered":true}`)
	for _, args := range [][]string{
		{"registry", "gc", "-o", "wide"},
		{"notifier", "test", "chat", "-o", "txt"},
	} {
		before := posts.Load()
		_, err := runAgainst(t, url, args...)
		if err == nil {
			t.Errorf("%q: exit 0", strings.Join(args, " "))
		}
		if posts.Load() != before {
			t.Errorf("%q: sent the POST, then refused the output format (%v)", strings.Join(args, " "), err)
		}
	}
}

// audit verify and export took the query's filters and ignored them:
// verify --since 1h --user alice checked the whole chain and said it was
// intact, and export --limit 1 streamed the whole trail. Only the flags a
// command honours are its own; -A with -n is refused.
func TestAuditSubcommandsTakeOnlyTheFiltersTheyHonour(t *testing.T) {
	for _, args := range [][]string{
		{"audit", "verify", "--since", "1h"},
		{"audit", "verify", "--user", "alice"},
		{"audit", "export", "--limit", "1"},
		{"audit", "-A", "-n", "team"},
		{"audit", "export", "-A", "-n", "team"},
	} {
		root := newRootCmd()
		root.SetArgs(append([]string{"--server", "http://127.0.0.1:1", "--token", "x"}, args...))
		root.SetOut(io.Discard)
		root.SetErr(io.Discard)
		if err := root.Execute(); err == nil || !(strings.Contains(err.Error(), "unknown flag") || strings.Contains(err.Error(), "not both")) {
			t.Errorf("gantry %s: %v; want it refused", strings.Join(args, " "), err)
		}
	}
}
