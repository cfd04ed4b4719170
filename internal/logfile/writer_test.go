package logfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Copies of stdout and stderr run concurrently (as the driver runs them).
// A line stamped before the writer's lock is taken can land in the file
// after a later-stamped line of the other stream, and followers that
// resume by time then lose it. The test clock ticks once a call, so any
// stamp read outside the lock shows as a time going backwards, and it
// also says so directly when it is read without the lock held.
func TestCopyStampsRecordsInFileOrder(t *testing.T) {
	const perStream = 2000
	path := filepath.Join(t.TempDir(), "log")
	w, err := Create(path, Options{MaxSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Unix(1700000000, 0).UTC()
	var ticks, unlocked atomic.Int64
	w.now = func() time.Time {
		if w.mu.TryLock() {
			w.mu.Unlock()
			unlocked.Add(1)
		}
		return base.Add(time.Duration(ticks.Add(1)))
	}
	var wg sync.WaitGroup
	for _, s := range []string{Stdout, Stderr} {
		pr, pw := io.Pipe()
		wg.Go(func() {
			for i := range perStream {
				fmt.Fprintf(pw, "%s %d\n", s, i)
			}
			pw.Close()
		})
		wg.Go(func() {
			if dropped, err := w.Copy(s, pr); err != nil || dropped != 0 {
				t.Errorf("Copy(%s) = %d dropped, %v", s, dropped, err)
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n := unlocked.Load(); n > 0 {
		t.Errorf("Copy read the clock %d times without holding the writer's lock", n)
	}
	got := readAll(t, path, ReadOptions{})
	if len(got) != 2*perStream {
		t.Fatalf("got %d records, want %d", len(got), 2*perStream)
	}
	next := map[string]int{}
	for i, e := range got {
		if i > 0 && !e.Time.After(got[i-1].Time) {
			t.Fatalf("record %d %q at %s is not after record %d %q at %s",
				i, e.Line, e.Time.Format(time.RFC3339Nano), i-1, got[i-1].Line, got[i-1].Time.Format(time.RFC3339Nano))
		}
		if want := fmt.Sprintf("%s %d", e.Stream, next[e.Stream]); e.Line != want {
			t.Fatalf("record %d = %q, want %q (each stream in its own order)", i, e.Line, want)
		}
		next[e.Stream]++
	}
}

// A rotation that fails (here the oldest file cannot be removed, as a
// non-empty directory stands in its place) must not stop logging: the
// writer keeps appending to the live file, says why in its log, tries
// again only after another MaxSize bytes, and rotates once the cause is
// gone.
func TestWriterWritesOnAfterAFailedRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	blocker := path + ".1"
	if err := os.MkdirAll(filepath.Join(blocker, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	w, err := Create(path, Options{MaxSize: 200, MaxFiles: 2, Log: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Unix(1700000000, 0)
	const broken = 20 // records of about 55 bytes: several times MaxSize
	writeNumbered(t, w, base, 0, broken)

	failures := strings.Count(logged.String(), "rotation failed")
	if failures == 0 {
		t.Fatalf("the failed rotation was not logged; log:\n%s", logged.String())
	}
	if failures >= broken-3 {
		t.Errorf("rotation was tried and logged %d times in %d records: it should wait for another MaxSize bytes", failures, broken)
	}
	if got := liveLines(t, path); strings.Join(got, ",") != strings.Join(numbered(0, broken), ",") {
		t.Fatalf("live file after failed rotations = %v, want every record", got)
	}

	if err := os.RemoveAll(blocker); err != nil {
		t.Fatal(err)
	}
	writeNumbered(t, w, base, broken, 30)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(blocker); err != nil || !st.Mode().IsRegular() {
		t.Fatalf("no rotated file once the cause was gone: %v", err)
	}
	got := lines(readAll(t, path, ReadOptions{}))
	first, _ := strconv.Atoi(got[0])
	if want := numbered(first, broken+30); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("records after rotating again are not the contiguous newest ones:\n got %v\nwant %v", got, want)
	}
	if err := w.Write(Entry{Time: base, Stream: Stdout, Line: "late"}); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Write after Close = %v, want os.ErrClosed", err)
	}
}

// liveLines returns the lines of the records in the live file alone (a
// Reader would read the rotated files too).
func liveLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, rec := range bytes.SplitAfter(b, []byte("\n")) {
		if len(rec) == 0 {
			continue
		}
		e, err := ParseEntry(rec)
		if err != nil {
			t.Fatalf("record %q: %v", rec, err)
		}
		out = append(out, e.Line)
	}
	return out
}
