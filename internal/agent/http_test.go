package agent

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/logfile"
)

// The agent answers a bad tail or since as the API server answers a bad
// request (400, reason Invalid, a message saying what to send), so that
// the error reaches `gantry logs` and the API's callers as documented.
func TestServeLogsQuery(t *testing.T) {
	a := &Agent{cfg: Config{NodeName: "n1", DataDir: t.TempDir()}}
	w, err := logfile.Create(a.LogPath("default", "web-1"), logfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range 3 {
		if err := w.Write(logfile.Entry{Time: base.Add(time.Duration(i) * time.Second), Stream: logfile.Stdout, Line: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)

	tests := []struct {
		query string
		lines []string // the lines of a 200
		says  string   // what a 400 says
	}{
		{query: "", lines: []string{"0", "1", "2"}},
		{query: "tail=2", lines: []string{"1", "2"}},
		{query: "tail=0", lines: []string{"0", "1", "2"}},
		{query: "since=2025-01-02T03:04:06Z", lines: []string{"1", "2"}},
		{query: "tail=abc", says: `tail="abc": send the number of last lines to return (0 or more)`},
		{query: "tail=-1", says: `tail="-1": send the number of last lines to return (0 or more)`},
		{query: "since=10m", says: `since="10m": send an RFC 3339 time`},
	}
	for _, tt := range tests {
		name := "?" + tt.query
		if tt.query == "" {
			name = "without a query"
		}
		t.Run(name, func(t *testing.T) {
			resp, err := http.Get(srv.URL + "/instances/default/web-1/logs?" + tt.query)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if tt.says != "" {
				var st v1.Status
				if resp.StatusCode != http.StatusBadRequest || json.NewDecoder(resp.Body).Decode(&st) != nil {
					t.Fatalf("answered %s, want 400 with a Status body", resp.Status)
				}
				if st.Code != http.StatusBadRequest || st.Reason != "Invalid" || !strings.HasPrefix(st.Message, tt.says) {
					t.Fatalf("answered %+v, want code 400, reason Invalid, message %q…", st, tt.says)
				}
				return
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("answered %s, want 200", resp.Status)
			}
			var got []string
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				var l LogLine
				if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
					t.Fatalf("line %q: %v", sc.Text(), err)
				}
				got = append(got, l.Line)
			}
			if !slices.Equal(got, tt.lines) {
				t.Fatalf("lines %q, want %q", got, tt.lines)
			}
		})
	}
}
