package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
)

// logsAnswer is how the fake server answers one request for logs: a
// status other than 200 with a v1.Status body, the connection dropped
// before any answer, or (by default) these lines, after which the stream
// ends as when the server or agent restarts.
type logsAnswer struct {
	status  int
	reason  string
	message string
	drop    bool
	lines   []logLine
}

// gone is the API server's answer for an instance that does not exist.
func gone() logsAnswer {
	return logsAnswer{status: http.StatusNotFound, reason: "NotFound", message: `instance "web-x" not found in namespace "default"`}
}

// logsServer answers the requests for logs in the order of answers and
// records each request's query.
type logsServer struct {
	t       *testing.T
	answers []logsAnswer

	mu      sync.Mutex
	queries []string
}

func (s *logsServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	n := len(s.queries)
	s.queries = append(s.queries, r.URL.Query().Encode())
	s.mu.Unlock()
	if n >= len(s.answers) {
		s.t.Errorf("request %d (%s) after the last scripted answer", n+1, r.URL.RawQuery)
		http.Error(w, "unexpected request", http.StatusTeapot)
		return
	}
	a := s.answers[n]
	switch {
	case a.drop:
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			s.t.Errorf("hijack: %v", err)
			return
		}
		conn.Close()
	case a.status != 0:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(a.status)
		json.NewEncoder(w).Encode(v1.Status{Code: a.status, Reason: a.reason, Message: a.message})
	default:
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		for _, l := range a.lines {
			enc.Encode(l)
		}
	}
}

// startLogsServer serves answers as a logsServer, and returns it with a
// client of it.
func startLogsServer(t *testing.T, answers []logsAnswer) (*logsServer, *client.Client) {
	t.Helper()
	fake := &logsServer{t: t, answers: answers}
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	c, err := client.New(client.Config{Server: srv.URL, Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	return fake, c
}

func (s *logsServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.queries)
}

func TestFollowLogs(t *testing.T) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(us int) time.Time { return t0.Add(time.Duration(us) * time.Microsecond) }
	out := func(us int, line string) logLine { return logLine{Time: at(us), Stream: "stdout", Line: line} }
	errs := func(us int, line string) logLine { return logLine{Time: at(us), Stream: "stderr", Line: line} }
	first := url.Values{"follow": {"true"}, "tail": {"10"}}.Encode()
	since := func(us int) string {
		return url.Values{"follow": {"true"}, "since": {at(us).Format(time.RFC3339Nano)}}.Encode()
	}

	tests := []struct {
		name    string
		existed bool
		answers []logsAnswer
		want    []string // lines printed
		says    string   // what the error says; empty: followLogs ends without error
		kind    error    // the error's kind, when it has one
		queries []string // nil: not checked
	}{
		{
			name:    "prints every line of a connection, an earlier time after a later one included",
			answers: []logsAnswer{{lines: []logLine{out(2, "out"), errs(1, "err"), out(2, "same time")}}, gone()},
			want:    []string{"out", "err", "same time"},
			queries: []string{first, since(2)},
		},
		{
			name: "after a reconnect prints only what it had not printed at the last time",
			answers: []logsAnswer{
				{lines: []logLine{out(1, "a"), out(2, "b"), errs(2, "x")}},
				{lines: []logLine{out(2, "b"), errs(2, "x"), errs(2, "x"), out(2, "c"), out(3, "d")}},
				{lines: []logLine{out(3, "d"), out(3, "d"), errs(4, "e")}},
				gone(),
			},
			want:    []string{"a", "b", "x", "x", "c", "d", "d", "e"},
			queries: []string{first, since(2), since(3), since(4)},
		},
		{
			name: "retries while the server or node cannot be reached",
			answers: []logsAnswer{
				{drop: true},
				{status: http.StatusServiceUnavailable, reason: "Unavailable"},
				{lines: []logLine{out(1, "a")}},
				gone(),
			},
			want:    []string{"a"},
			queries: []string{first, first, first, since(1)},
		},
		{
			// A proxy in front of the server restarting or busy: one
			// such answer ended the follow, and with it every follow
			// of logs -f app/NAME.
			name: "retries what a proxy answers while the server is away",
			answers: []logsAnswer{
				{status: http.StatusBadGateway, reason: "BadGateway"},
				{status: http.StatusTooManyRequests, reason: "TooManyRequests"},
				{lines: []logLine{out(1, "a")}},
				gone(),
			},
			want:    []string{"a"},
			queries: []string{first, first, first, since(1)},
		},
		{
			name:    "ends without error when the instance is deleted while followed",
			answers: []logsAnswer{{}, gone()},
		},
		{
			name:    "ends without error when a listed instance is already deleted",
			existed: true,
			answers: []logsAnswer{gone()},
		},
		{
			name:    "says an instance that does not exist is not found",
			answers: []logsAnswer{gone()},
			says:    `logs of web-x: instance "web-x" not found in namespace "default"`,
			kind:    v1.ErrNotFound,
		},
		{
			name:    "returns a forbidden at once",
			answers: []logsAnswer{{status: http.StatusForbidden, reason: "Forbidden", message: "user alice may not get instances/logs"}},
			says:    "logs of web-x: user alice may not get instances/logs",
			kind:    v1.ErrForbidden,
		},
		{
			name:    "returns an unauthorized at once",
			answers: []logsAnswer{{status: http.StatusUnauthorized, reason: "Unauthorized", message: "token expired"}},
			says:    "logs of web-x: token expired",
			kind:    v1.ErrUnauthorized,
		},
		{
			name:    "returns a bad request at once",
			answers: []logsAnswer{{status: http.StatusBadRequest, reason: "Invalid", message: "invalid: tail must be a non-negative integer"}},
			says:    "logs of web-x: invalid: tail must be a non-negative integer",
			kind:    v1.ErrInvalid,
		},
		{
			name:    "returns an internal error at once",
			answers: []logsAnswer{{status: http.StatusInternalServerError, reason: "InternalError", message: "open log: permission denied"}},
			says:    "logs of web-x: open log: permission denied",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake, c := startLogsServer(t, tt.answers)
			// Only a bug makes it wait this long: every script ends.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var got []string
			err := followLogs(ctx, c, "default", "web-x", url.Values{"follow": {"true"}, "tail": {"10"}}, tt.existed,
				func(l logLine) { got = append(got, l.Line) }, nil)
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("followLogs never returned; requests: %q", fake.requests())
			}
			switch {
			case tt.says == "" && err != nil:
				t.Errorf("followLogs = %v, want no error", err)
			case tt.says != "" && (err == nil || err.Error() != tt.says):
				t.Errorf("followLogs = %v, want the error %q", err, tt.says)
			case tt.kind != nil && !errors.Is(err, tt.kind):
				t.Errorf("followLogs = %v, not of kind %v", err, tt.kind)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("printed %q, want %q", got, tt.want)
			}
			reqs := fake.requests()
			if len(reqs) != len(tt.answers) {
				t.Errorf("made %d requests, want %d (one per scripted answer): %q", len(reqs), len(tt.answers), reqs)
			}
			if tt.queries != nil && !slices.Equal(reqs, tt.queries) {
				t.Errorf("queries:\n got %q\nwant %q", reqs, tt.queries)
			}
		})
	}
}

// --tail 0 -f sends sinceSeconds=0, counted on the node's clock. The
// first ask is exactly that (it once asked for one second more, and
// printed up to a second of old lines); a retry before any line widens
// it by the time since, so that lines written meanwhile are not lost.
func TestFollowLogsWidensSinceSecondsOnlyOnARetry(t *testing.T) {
	fake, c := startLogsServer(t, []logsAnswer{
		{status: http.StatusServiceUnavailable, reason: "Unavailable"},
		{lines: []logLine{{Time: time.Now(), Stream: "stdout", Line: "a"}}},
		gone(),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := followLogs(ctx, c, "default", "web-x", url.Values{"follow": {"true"}, "sinceSeconds": {"0"}}, false, func(logLine) {}, nil); err != nil {
		t.Fatal(err)
	}
	reqs := fake.requests()
	if len(reqs) < 2 || reqs[0] != "follow=true&sinceSeconds=0" || reqs[1] != "follow=true&sinceSeconds=1" {
		t.Errorf("queries %q; want sinceSeconds=0, then 1 after the retry", reqs)
	}
}

// logs -f of an instance not placed yet waited without a word (review
// helper-166); the follow says once why it waits.
func TestFollowLogsSaysWhyItWaits(t *testing.T) {
	_, c := startLogsServer(t, []logsAnswer{
		{status: http.StatusServiceUnavailable, reason: "Unavailable", message: `instance web-x is not on a node yet (it is Pending)`},
		{status: http.StatusServiceUnavailable, reason: "Unavailable", message: `instance web-x is not on a node yet (it is Pending)`},
		gone(),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var notes []string
	if err := followLogs(ctx, c, "default", "web-x", url.Values{"follow": {"true"}}, true, func(logLine) {}, func(s string) { notes = append(notes, s) }); err != nil {
		t.Fatal(err)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "not on a node yet") {
		t.Errorf("notes %q; want one saying why it waits", notes)
	}
}
