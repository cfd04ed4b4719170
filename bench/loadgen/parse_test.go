package loadgen

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

// parsed is what a parser made of a response.
type parsed struct {
	status int
	body   int64
	value  string
	close  bool
	used   int
	done   bool
	err    bool
}

// parseAll feeds in to a parser in pieces of size step (all at once for
// 0) and ends the connection after the last byte if the response is
// still open.
func parseAll(in []byte, step int, head bool, marker string) parsed {
	var p respParser
	p.reset(head, marker)
	if step <= 0 {
		step = len(in)
	}
	out := parsed{}
	for off := 0; off < len(in) && !out.done; {
		piece := in[off:min(off+step, len(in))]
		n, done, err := p.feed(piece)
		out.used += n
		off += n
		if err != nil {
			out.err = true
			return out
		}
		out.done = done
		if n < len(piece) && !done {
			panic("feed left bytes of an unfinished response")
		}
	}
	if !out.done {
		if p.eof() != nil {
			out.err = true
			return out
		}
		out.done = true
	}
	out.status, out.body, out.value, out.close = p.status, p.body, p.value, p.close
	return out
}

func TestResponseParser(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		head bool
		want parsed // used is checked as len(in) minus extra
		rest int    // bytes after the response
	}{
		{"content length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Version: v2\r\n\r\nhello", false,
			parsed{status: 200, body: 5, value: "v2", done: true}, 0},
		{"no reason phrase", "HTTP/1.1 204\r\n\r\n", false, parsed{status: 204, done: true}, 0},
		{"chunked with extensions and trailers", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n3 \r\n, w\r\n0\r\nX-Trailer: 1\r\n\r\n", false,
			parsed{status: 200, body: 8, done: true}, 0},
		{"chunked wins over content length", "HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n", false,
			parsed{status: 200, body: 2, done: true}, 0},
		{"a HEAD answer has no body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true, parsed{status: 200, done: true}, 0},
		{"304 has no body", "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", false, parsed{status: 304, done: true}, 0},
		{"an interim 100 is skipped", "HTTP/1.1 100 Continue\r\nX-Version: no\r\n\r\nHTTP/1.1 503 Busy\r\nContent-Length: 2\r\nX-Version: v1\r\n\r\nno", false,
			parsed{status: 503, body: 2, value: "v1", done: true}, 0},
		{"body to the end of the connection", "HTTP/1.1 200 OK\r\n\r\nall of it", false, parsed{status: 200, body: 9, close: true, done: true}, 0},
		{"HTTP/1.0 closes unless kept alive", "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false, parsed{status: 200, close: true, done: true}, 0},
		{"HTTP/1.0 kept alive", "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n", false, parsed{status: 200, done: true}, 0},
		{"connection close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx", false, parsed{status: 200, body: 1, close: true, done: true}, 0},
		{"bytes after the response are left", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1", false, parsed{status: 200, body: 1, done: true}, 8},
		{"marker name is case-blind, first one counts", "HTTP/1.1 200 OK\r\nx-version:  v3 \r\nX-Version: v4\r\nContent-Length: 0\r\n\r\n", false,
			parsed{status: 200, value: "v3", done: true}, 0},
		{"cut short", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", false, parsed{err: true}, 0},
		{"empty reply", "", false, parsed{err: true}, 0},
		{"not HTTP", "SSH-2.0-OpenSSH\r\n\r\n", false, parsed{err: true}, 0},
		{"HTTP/2 status line", "HTTP/2 200\r\n\r\n", false, parsed{err: true}, 0},
		{"bad status code", "HTTP/1.1 2x0 OK\r\n\r\n", false, parsed{err: true}, 0},
		{"bad content length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", false, parsed{err: true}, 0},
		{"two content lengths", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx", false, parsed{err: true}, 0},
		{"bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false, parsed{err: true}, 0},
		{"chunk longer than its size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxx\r\n0\r\n\r\n", false, parsed{err: true}, 0},
		{"header without colon", "HTTP/1.1 200 OK\r\nbroken\r\n\r\n", false, parsed{err: true}, 0},
		{"101 is not expected", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", false, parsed{err: true}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, step := range []int{0, 1, 2, 7} {
				got := parseAll([]byte(tc.in), step, tc.head, "x-version")
				want := tc.want
				if !want.err {
					want.used = len(tc.in) - tc.rest
				} else {
					got.used = 0
				}
				if got != want {
					t.Fatalf("in pieces of %d: got %+v, want %+v", step, got, want)
				}
			}
		})
	}
}

// A connection that dies after an interim answer was not a stale one:
// the server had begun to answer this request.
func TestAnInterimAnswerCountsAsStarted(t *testing.T) {
	var p respParser
	p.reset(false, "")
	if p.started() {
		t.Fatal("started before any byte")
	}
	if _, done, err := p.feed([]byte("HTTP/1.1 100 Continue\r\n\r\n")); done || err != nil {
		t.Fatalf("feed = done %v, %v", done, err)
	}
	if !p.started() {
		t.Fatal("not started after a 100 Continue")
	}
	p.reset(false, "")
	if p.started() {
		t.Fatal("still started after reset")
	}
}

func TestResponseHeadIsBounded(t *testing.T) {
	in := "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", maxHead) + "\r\n\r\n"
	if got := parseAll([]byte(in), 4096, false, ""); !got.err {
		t.Fatalf("a %d-byte head was accepted: %+v", len(in), got)
	}
}

// FuzzResponseParser checks that the parser reads a response the same
// way whatever pieces it arrives in, never uses bytes it was not given,
// and agrees with net/http on the status and body length of every
// response both accept.
func FuzzResponseParser(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nrest",
		"HTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 200 OK\r\n\r\nuntil close",
	} {
		f.Add([]byte(s), uint8(1))
	}
	f.Fuzz(func(t *testing.T, in []byte, step uint8) {
		whole := parseAll(in, 0, false, "x-version")
		pieces := parseAll(in, int(step), false, "x-version")
		if whole.err != pieces.err || (!whole.err && whole != pieces) {
			t.Fatalf("whole %+v, in pieces of %d %+v", whole, step, pieces)
		}
		if whole.err {
			return
		}
		if whole.used > len(in) {
			t.Fatalf("used %d of %d bytes", whole.used, len(in))
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(in[:whole.used])), nil)
		if err != nil || resp.StatusCode < 200 {
			return
		}
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil {
			return
		}
		if resp.StatusCode != whole.status || n != whole.body {
			t.Fatalf("net/http: %d with %d body bytes; parser: %+v", resp.StatusCode, n, whole)
		}
	})
}
