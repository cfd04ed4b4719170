package logfile

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// After an upgrade, a container keeps the log driver it started with, so
// its live file goes on getting unmarked pieces. A follower with a tail
// and since, whose tail scan left out a stdout line begun before since,
// returned the rest of that line as a line of its own when the old driver
// wrote it; a full read drops it.
func TestFollowDropsTheRestOfAnUnmarkedLineTheTailLeftOut(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	rec := func(s float64, stream, line string, p bool) []byte {
		return appendRecord(nil, Entry{Time: at(s), Stream: stream, Line: line, Partial: p})
	}
	var b []byte
	b = append(b, rec(1, Stdout, "A-", true)...)
	b = append(b, rec(3, Stderr, "e", false)...)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := Open(path, ReadOptions{Since: at(2), Tail: 1, Follow: true, PollInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(rec(4, Stdout, "rest", false)) // the old driver ends A- (no "c")
	f.Write(rec(5, Stdout, "next", false))
	f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var want []string
	for _, e := range readAll(t, path, ReadOptions{Since: at(2)}) {
		want = append(want, e.Line)
	}
	var got []string
	for len(got) < len(want) {
		e, err := r.Next(ctx)
		if err != nil {
			t.Fatalf("Next after %q: %v", got, err)
		}
		got = append(got, e.Line)
	}
	if !slices.Equal(got, want) || !slices.Equal(want, []string{"e", "next"}) {
		t.Fatalf("follower %q, full read %q; want both [e next]", got, want)
	}
}
