package logfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Logs written before the later pieces of a long line were marked ("c")
// hold the pieces with "p" alone. The tail scan took the last piece of
// such a line for a line of its own, so `logs --tail` of a log from
// before an upgrade returned only the end of each long line.
func TestTailOfALogWrittenBeforePiecesWereMarked(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	rec := func(ms int, stream, line string, partial, cont bool) string {
		e := Entry{Time: t0.Add(time.Duration(ms) * time.Millisecond), Stream: stream, Line: line, Partial: partial, cont: cont}
		return string(appendRecord(nil, e))
	}
	for _, tc := range []struct {
		name    string
		records []string
		tail    int
		since   time.Time
		want    []string
	}{{
		name: "old writer",
		records: []string{
			rec(0, Stdout, "first", false, false),
			rec(1, Stdout, "aaaaa", true, false),
			rec(2, Stdout, "bbbbb", true, false),
			rec(3, Stdout, "ccccc", false, false),
			rec(4, Stdout, "last", false, false),
		},
		tail: 2,
		want: []string{"aaaaabbbbbccccc", "last"},
	}, {
		name: "old writer, interleaved streams",
		records: []string{
			rec(1, Stdout, "aaaaa", true, false),
			rec(2, Stderr, "err", false, false),
			rec(3, Stdout, "bbbbb", false, false),
		},
		tail: 1,
		want: []string{"aaaaabbbbb"},
	}, {
		// The old writer died inside a line; the new one closed it with
		// a marked piece.
		name: "upgraded inside a line",
		records: []string{
			rec(1, Stdout, "aaaaa", true, false),
			rec(2, Stdout, "bbbbb", true, false),
			rec(3, Stdout, "", false, true),
			rec(4, Stdout, "new", false, false),
		},
		tail: 2,
		want: []string{"aaaaabbbbb", "new"},
	}, {
		// since judges the old line by its first piece, as a full read.
		name: "old writer, since between the pieces",
		records: []string{
			rec(1, Stdout, "aaaaa", true, false),
			rec(3, Stdout, "bbbbb", false, false),
			rec(4, Stdout, "last", false, false),
		},
		tail:  2,
		since: t0.Add(2 * time.Millisecond),
		want:  []string{"last"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.log")
			if err := os.WriteFile(path, []byte(strings.Join(tc.records, "")), 0o600); err != nil {
				t.Fatal(err)
			}
			full := readAll(t, path, ReadOptions{Since: tc.since})
			got := readAll(t, path, ReadOptions{Tail: tc.tail, Since: tc.since})
			sameEntries(t, "tail against the full read", got, lastLines(full, tc.tail))
			var lines []string
			for _, e := range got {
				lines = append(lines, e.Line)
			}
			if strings.Join(lines, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("tail %d: got %q, want %q", tc.tail, lines, tc.want)
			}
		})
	}
}
