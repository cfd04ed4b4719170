package logfile

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A writer killed mid-record (or a power loss) left a record without its
// newline at the end of the live file. The next writer for the same log
// (the container restarted) opened it with Create and glued its first
// record to the fragment, and a reader dropped both.
func TestCreateAfterATornTailKeepsTheNextRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	good := appendRecord(nil, Entry{Time: time.Now(), Stream: Stdout, Line: "before the crash"})
	torn := appendRecord(nil, Entry{Time: time.Now(), Stream: Stdout, Line: "cut by the crash"})
	torn = torn[:len(torn)/2]
	if err := os.WriteFile(path, append(good, torn...), 0o640); err != nil {
		t.Fatal(err)
	}
	w, err := Create(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(Entry{Time: time.Now(), Stream: Stdout, Line: "after the restart"}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if got := lines(readAll(t, path, ReadOptions{})); len(got) != 2 || got[1] != "after the restart" {
		b, _ := os.ReadFile(path)
		t.Fatalf("read back %q; want the first record and the one written after the restart\nfile: %q", got, b)
	}
}

// A line longer than MaxLineSize is stored as several records. Readers
// got the pieces as lines of their own, and a tail of 1 was the last
// 16 KiB piece. Next joins them, also across records of the other stream
// written between the pieces, and a tail counts lines.
func TestLongLinesAreReadWhole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := Create(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 3*MaxLineSize+10)
	if _, err := w.Copy(Stdout, strings.NewReader("short\n"+long+"\n")); err != nil {
		t.Fatal(err)
	}
	// An stderr line written between two pieces of a stdout line.
	for i, e := range []Entry{
		{Stream: Stdout, Line: "a-", Partial: true},
		{Stream: Stderr, Line: "between"},
		{Stream: Stdout, Line: "b"},
		{Stream: Stdout, Line: "last"},
	} {
		e.Time = time.Now().Add(time.Duration(i) * time.Millisecond)
		if err := w.Write(e); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()

	for _, tc := range []struct {
		tail int
		want []string
	}{
		{0, []string{"short", long, "between", "a-b", "last"}},
		{1, []string{"last"}},
		{4, []string{long, "between", "a-b", "last"}},
	} {
		got := readAll(t, path, ReadOptions{Tail: tc.tail})
		if gl := lines(got); strings.Join(gl, "|") != strings.Join(tc.want, "|") {
			t.Errorf("tail %d: %d lines %q; want %q", tc.tail, len(gl), short(gl), short(tc.want))
		}
		for _, e := range got {
			if e.Partial {
				t.Errorf("tail %d: a joined line is still marked partial", tc.tail)
			}
		}
	}
}

// A follower that gives up waiting (the agent waits 100 ms at a time to
// flush what it has) between two pieces of a line keeps the first: the
// line comes out whole when the rest arrives.
func TestFollowKeepsThePiecesOfALineAcrossWaits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := Create(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r, err := Open(path, ReadOptions{Follow: true, PollInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := w.Write(Entry{Time: time.Now(), Stream: Stdout, Line: "first half, ", Partial: true}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err = r.Next(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next with half a line written: %v, want it to wait", err)
	}
	if err := w.Write(Entry{Time: time.Now(), Stream: Stdout, Line: "second half"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e, err := r.Next(ctx)
	if err != nil || e.Line != "first half, second half" {
		t.Fatalf("Next = %q, %v; want the whole line", e.Line, err)
	}
}

func short(ls []string) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = trunc(l)
	}
	return out
}
