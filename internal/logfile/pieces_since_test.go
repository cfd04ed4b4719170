package logfile

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var piecesBase = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

// at is piecesBase plus s seconds.
func at(s float64) time.Time { return piecesBase.Add(time.Duration(s * float64(time.Second))) }

// rec is a record to write: a piece of a line when partial.
type rec struct {
	s       float64 // seconds after piecesBase
	stream  string
	line    string
	partial bool
}

func writeRecs(t *testing.T, w *Writer, recs []rec) {
	t.Helper()
	for _, r := range recs {
		if err := w.Write(Entry{Time: at(r.s), Stream: r.stream, Line: r.line, Partial: r.partial}); err != nil {
			t.Fatal(err)
		}
	}
}

// gap is n stderr lines at second s.
func gap(s float64, n int) []rec {
	out := make([]rec, n)
	for i := range out {
		out[i] = rec{s, Stderr, "gap" + strconv.Itoa(i), false}
	}
	return out
}

// A line stored in pieces is selected by the time of its first piece, and
// a reader that starts inside the log (a tail, or the oldest file of a log
// whose older files were deleted) returns lines whole or not at all: never
// a fragment that begins with a later piece. Since with a tail is the last
// N of the lines since.
func TestLinesInPiecesAreSelectedWhole(t *testing.T) {
	interleaved := []rec{
		{0, Stdout, "old", false},
		{5, Stdout, "a1-", true},
		{8, Stderr, "e1", false},
		{12, Stdout, "a2", false}, // "a1-a2" began at 5
		{13, Stderr, "e2", false},
		{14, Stdout, "b1-", true},
		{15, Stderr, "e3", false},
		{16, Stdout, "b2", false}, // "b1-b2" began at 14
		{17, Stdout, "c", false},
	}
	farApart := append(append([]rec{{1, Stdout, "x1-", true}}, gap(2, 300)...), rec{3, Stdout, "x2", false})
	tests := []struct {
		name  string
		recs  []rec
		opts  ReadOptions
		since float64 // seconds, when not zero
		want  string
	}{
		{name: "a full read joins the pieces", recs: interleaved, want: "old|e1|a1-a2|e2|e3|b1-b2|c"},
		{name: "since drops a line begun before it", recs: interleaved, since: 10, want: "e2|e3|b1-b2|c"},
		{name: "since keeps a line begun at it", recs: interleaved, since: 14, want: "e3|b1-b2|c"},
		{name: "since just after a line began drops it", recs: interleaved, since: 14.5, want: "e3|c"},
		{name: "tail within since", recs: interleaved, since: 10, opts: ReadOptions{Tail: 2}, want: "b1-b2|c"},
		{name: "tail longer than the lines since", recs: interleaved, since: 10, opts: ReadOptions{Tail: 6}, want: "e2|e3|b1-b2|c"},
		{name: "tail with since after a line began", recs: interleaved, since: 14.5, opts: ReadOptions{Tail: 2}, want: "e3|c"},
		{name: "tail counts lines by their last piece", recs: interleaved, opts: ReadOptions{Tail: 5}, want: "a1-a2|e2|e3|b1-b2|c"},
		{name: "tail finds the first piece past many records of the other stream", recs: farApart, opts: ReadOptions{Tail: 1}, want: "x1-x2"},
		{name: "tail drops a line begun before since far back", recs: farApart, since: 1.5, opts: ReadOptions{Tail: 1}, want: "gap299"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.log")
			w, err := Create(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			writeRecs(t, w, tt.recs)
			w.Close()
			if tt.since != 0 {
				tt.opts.Since = at(tt.since)
			}
			if got := strings.Join(lines(readAll(t, path, tt.opts)), "|"); got != tt.want {
				t.Fatalf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

// The oldest file left after rotations may begin in the middle of a line
// whose first pieces went with a deleted file: that rest is not a line.
func TestAReadDropsTheRestOfALineWhoseStartWasDeleted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := Create(path, Options{MaxSize: 400, MaxFiles: 2})
	if err != nil {
		t.Fatal(err)
	}
	writeRecs(t, w, []rec{{1, Stdout, "start-", true}})
	writeRecs(t, w, gap(2, 12)) // about 60 bytes each: rotates twice
	writeRecs(t, w, []rec{{3, Stdout, "end", false}, {4, Stdout, "next", false}})
	w.Close()
	for _, opts := range []ReadOptions{{}, {Tail: 100}} {
		got := lines(readAll(t, path, opts))
		for _, l := range got {
			if strings.HasPrefix(l, "end") || strings.HasPrefix(l, "start") {
				t.Fatalf("tail %d: %q has a piece of the line whose start was deleted", opts.Tail, got)
			}
		}
		if len(got) == 0 || got[len(got)-1] != "next" {
			t.Fatalf("tail %d: %q, want it to end with next", opts.Tail, got)
		}
	}
}

// A follower gets the rest of a line that was in progress when it opened
// only when it returned the line's start: not when the line began before
// Since, nor when its start lies beyond what the tail scan looks at.
func TestFollowDropsTheRestOfALineItDidNotStart(t *testing.T) {
	tests := []struct {
		name   string
		before []rec
		opts   ReadOptions
		since  float64
		want   []string
	}{
		{
			name:   "begun before since",
			before: []rec{{1, Stdout, "s1-", true}},
			since:  2,
			want:   []string{"next"},
		},
		{
			name:   "begun before since, with a tail",
			before: []rec{{1, Stdout, "s1-", true}, {3, Stderr, "err", false}},
			since:  2,
			opts:   ReadOptions{Tail: 1},
			want:   []string{"err", "next"},
		},
		{
			name:   "begun after since, with a tail",
			before: []rec{{1, Stdout, "s1-", true}, {3, Stderr, "err", false}},
			since:  0.5,
			opts:   ReadOptions{Tail: 1},
			want:   []string{"err", "s1-s2", "next"},
		},
		{
			name:   "begun beyond the tail scan",
			before: append([]rec{{1, Stdout, "s1-", true}}, gap(2, 2*maxPiecesGap)...),
			opts:   ReadOptions{Tail: 1},
			want:   []string{"gap" + strconv.Itoa(2*maxPiecesGap-1), "next"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.log")
			w, err := Create(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			writeRecs(t, w, tt.before)
			opts := tt.opts
			opts.Follow, opts.PollInterval = true, time.Millisecond
			if tt.since != 0 {
				opts.Since = at(tt.since)
			}
			r, err := Open(path, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			writeRecs(t, w, []rec{{10, Stdout, "s2", false}, {11, Stdout, "next", false}})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var got []string
			for len(got) < len(tt.want) {
				e, err := r.Next(ctx)
				if err != nil {
					t.Fatalf("Next after %q: %v", got, err)
				}
				got = append(got, e.Line)
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Fatalf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

// Every piece of a line but the first is marked, also the empty record
// with which Create or Close ends a line left open: a reader that starts
// inside the log tells the rest of a line from a line by that mark.
func TestTheWriterMarksTheLaterPiecesOfALine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := Create(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 2*MaxLineSize+1)
	if _, err := w.Copy(Stdout, strings.NewReader("short\n"+long+"\n")); err != nil {
		t.Fatal(err)
	}
	writeRecs(t, w, []rec{{1, Stderr, "open-", true}})
	w.Close() // ends the stderr line
	w, err = Create(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	writeRecs(t, w, []rec{{2, Stderr, "left open", true}})
	w.f.Close() // a writer that died: Create ends its line
	if w, err = Create(path, Options{}); err != nil {
		t.Fatal(err)
	}
	w.Close()

	tests := []struct {
		name          string
		line          string
		partial, cont bool
	}{
		{name: "a short line is neither", line: "short"},
		{name: "the first piece is partial", line: long[:MaxLineSize], partial: true},
		{name: "a middle piece is both", line: long[MaxLineSize : 2*MaxLineSize], partial: true, cont: true},
		{name: "the last piece is continued", line: long[2*MaxLineSize:], cont: true},
		{name: "a piece left open", line: "open-", partial: true},
		{name: "Close ends it with a continued record", line: "", cont: true},
		{name: "a piece its writer left open", line: "left open", partial: true},
		{name: "Create ends it with a continued record", line: "", cont: true},
	}
	recs := readRecords(t, path, ReadOptions{})
	if len(recs) != len(tests) {
		t.Fatalf("%d records, want %d", len(recs), len(tests))
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if e := recs[i]; e.Line != tt.line || e.Partial != tt.partial || e.cont != tt.cont {
				t.Fatalf("record %d: %q partial=%v cont=%v, want %q partial=%v cont=%v", i, trunc(e.Line), e.Partial, e.cont, trunc(tt.line), tt.partial, tt.cont)
			}
		})
	}
}
