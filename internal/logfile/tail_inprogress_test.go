package logfile

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// `logs -f --tail 1` while a container was in the middle of a long stdout
// line (its first piece written, the rest not yet) and had just written a
// stderr line: the tail scan counted the stderr line, skipped the stdout
// piece as a piece of a line beyond the one asked for, and the follower
// then got the rest of the stdout line without its start ("END").
func TestTailFollowKeepsTheStartOfALineStillBeingWritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := Create(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	t0 := time.Now()
	first := strings.Repeat("a", MaxLineSize)
	for _, e := range []Entry{
		{Time: t0, Stream: Stdout, Line: "older"},
		{Time: t0.Add(1 * time.Millisecond), Stream: Stdout, Line: first, Partial: true},
		{Time: t0.Add(2 * time.Millisecond), Stream: Stderr, Line: "err line"},
	} {
		if err := w.Write(e); err != nil {
			t.Fatal(err)
		}
	}

	r, err := Open(path, ReadOptions{Tail: 1, Follow: true, PollInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// The rest of the stdout line arrives after the reader opened.
	if err := w.Write(Entry{Time: t0.Add(3 * time.Millisecond), Stream: Stdout, Line: "END"}); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got []string
	for range 2 {
		e, err := r.Next(ctx)
		if err != nil {
			t.Fatalf("Next: %v (got %q)", err, short(got))
		}
		got = append(got, e.Line)
	}
	if got[0] != "err line" || got[1] != first+"END" {
		t.Fatalf("got %q; want the stderr line, then the whole stdout line (%d bytes)", short(got), len(first)+3)
	}
}
