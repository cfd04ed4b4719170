package logfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A driver killed (SIGKILL, OOM) in the middle of a long line left its
// pieces without the last one. The container restarted, a new driver
// appended to the same log, and readers joined its first line of that
// stream onto the dead line's pieces. Create now ends such a line.
func TestCreateEndsALineItsLastWriterLeftOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	t0 := time.Now()
	var b []byte
	for _, e := range []Entry{
		{Time: t0, Stream: Stdout, Line: "dead-piece-", Partial: true},
		{Time: t0.Add(time.Millisecond), Stream: Stderr, Line: "err-piece-", Partial: true},
		{Time: t0.Add(2 * time.Millisecond), Stream: Stderr, Line: "err, whole"},
	} {
		b = appendRecord(b, e)
	}
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}
	w, err := Create(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []Entry{
		{Time: t0.Add(time.Minute), Stream: Stdout, Line: "first line of the new run"},
		{Time: t0.Add(time.Minute + time.Millisecond), Stream: Stderr, Line: "first stderr line of the new run"},
	} {
		if err := w.Write(e); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	got := strings.Join(lines(readAll(t, path, ReadOptions{})), "|")
	if want := "err-piece-err, whole|dead-piece-|first line of the new run|first stderr line of the new run"; got != want {
		t.Fatalf("read back %q\nwant      %q", got, want)
	}
	recs := readRecords(t, path, ReadOptions{})
	if len(recs) != 6 {
		t.Fatalf("%d records, want 6 (one empty record ending the stdout line only): %+v", len(recs), recs)
	}
}

// drive closes the Writer while a copy may still be in the middle of a
// long line (the streams were still open drainTimeout after the stop).
// The line was left open, and the next driver's first stdout line was
// joined to it. Close now ends it.
func TestCloseEndsALineLeftOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := Create(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.writeNow(Entry{Stream: Stdout, Line: "cut-", Partial: true}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := w.writeNow(Entry{Stream: Stdout, Line: "after Close"}); err == nil {
		t.Fatal("a write after Close succeeded")
	}
	recs := readRecords(t, path, ReadOptions{})
	if len(recs) != 2 || recs[1].Line != "" || recs[1].Partial || recs[1].Stream != Stdout {
		t.Fatalf("records %+v; want the piece and an empty stdout record ending its line", recs)
	}
}
