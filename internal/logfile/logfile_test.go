package logfile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/containerd/containerd/v2/core/runtime/v2/logging"
)

// readAll returns every record a non-following Reader gives.
// readAll reads the lines of a log, as Next joins them.
func readAll(t *testing.T, path string, opts ReadOptions) []Entry {
	t.Helper()
	return read(t, path, opts, (*Reader).Next)
}

// readRecords reads the records of a log as they are stored: a long line
// in its pieces.
func readRecords(t *testing.T, path string, opts ReadOptions) []Entry {
	t.Helper()
	return read(t, path, opts, (*Reader).nextRecord)
}

func read(t *testing.T, path string, opts ReadOptions, next func(*Reader, context.Context) (Entry, error)) []Entry {
	t.Helper()
	r, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer r.Close()
	var out []Entry
	for {
		e, err := next(r, context.Background())
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		out = append(out, e)
	}
}

func lines(es []Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Line
	}
	return out
}

// writeNumbered writes records "0" … "n-1", one second apart from base.
func writeNumbered(t *testing.T, w *Writer, base time.Time, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := w.Write(Entry{Time: base.Add(time.Duration(i) * time.Second), Stream: Stdout, Line: strconv.Itoa(i)}); err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
}

func numbered(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, strconv.Itoa(i))
	}
	return out
}

func TestWriterRotatesBySizeAndKeepsMaxFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c", "log")
	w, err := Create(path, Options{MaxSize: 512, MaxFiles: 3})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Unix(1700000000, 0)
	writeNumbered(t, w, base, 0, 100)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{path, path + ".1", path + ".2"} {
		st, err := os.Stat(name)
		if err != nil {
			t.Fatalf("expected %s: %v", name, err)
		}
		if st.Size() > 512 {
			t.Errorf("%s has %d bytes, more than MaxSize", name, st.Size())
		}
	}
	if _, err := os.Stat(path + ".3"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("path.3 should not exist with MaxFiles 3: %v", err)
	}
	got := lines(readAll(t, path, ReadOptions{}))
	if len(got) == 0 || got[len(got)-1] != "99" {
		t.Fatalf("last record = %v, want 99", got)
	}
	first, _ := strconv.Atoi(got[0])
	if want := numbered(first, 100); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("records are not the contiguous newest ones:\n got %v\nwant %v", got, want)
	}
}

func TestWriterWithOneFileKeepsNoHistory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	w, err := Create(path, Options{MaxSize: 200, MaxFiles: 1})
	if err != nil {
		t.Fatal(err)
	}
	writeNumbered(t, w, time.Unix(1700000000, 0), 0, 20)
	w.Close()
	if _, err := os.Stat(path + ".1"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("path.1 exists with MaxFiles 1")
	}
	got := lines(readAll(t, path, ReadOptions{}))
	if len(got) == 0 || got[len(got)-1] != "19" {
		t.Fatalf("got %v", got)
	}
}

func TestWriterAppendsToAnExistingLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	base := time.Unix(1700000000, 0)
	for run := range 2 {
		w, err := Create(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		writeNumbered(t, w, base, run*3, 3)
		w.Close()
	}
	if got := lines(readAll(t, path, ReadOptions{})); strings.Join(got, ",") != "0,1,2,3,4,5" {
		t.Fatalf("got %v", got)
	}
}

func TestCopySplitsOutputIntoLines(t *testing.T) {
	long := strings.Repeat("é", MaxLineSize) // 2 bytes a rune: forces cuts at odd offsets
	tests := []struct {
		name  string
		input string
		want  []Entry // Time ignored
	}{
		{name: "lines become records", input: "a\nbb\n\nccc\n", want: []Entry{{Line: "a"}, {Line: "bb"}, {Line: ""}, {Line: "ccc"}}},
		{name: "a last line without newline is kept whole", input: "a\nno newline", want: []Entry{{Line: "a"}, {Line: "no newline"}}},
		{name: "carriage returns are kept", input: "dos\r\n", want: []Entry{{Line: "dos\r"}}},
		{name: "nothing gives nothing", input: "", want: nil},
		{name: "a line of exactly the maximum is one record", input: strings.Repeat("x", MaxLineSize) + "\n", want: []Entry{{Line: strings.Repeat("x", MaxLineSize)}}},
		{name: "a long line is cut into partial records on rune boundaries", input: long + "\nafter\n", want: []Entry{
			{Line: strings.Repeat("é", MaxLineSize/2), Partial: true},
			{Line: strings.Repeat("é", MaxLineSize/2)},
			{Line: "after"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "log")
			w, err := Create(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			dropped, err := w.Copy(Stderr, strings.NewReader(tt.input))
			if err != nil || dropped != 0 {
				t.Fatalf("Copy = %d, %v", dropped, err)
			}
			w.Close()
			got := readRecords(t, path, ReadOptions{})
			if len(got) != len(tt.want) {
				t.Fatalf("got %d records, want %d: %+v", len(got), len(tt.want), got)
			}
			for i := range got {
				if got[i].Line != tt.want[i].Line || got[i].Partial != tt.want[i].Partial || got[i].Stream != Stderr {
					t.Errorf("record %d = {%q partial=%v %s}, want {%q partial=%v}", i, trunc(got[i].Line), got[i].Partial, got[i].Stream, trunc(tt.want[i].Line), tt.want[i].Partial)
				}
				if !utf8.ValidString(got[i].Line) {
					t.Errorf("record %d was cut inside a rune", i)
				}
			}
		})
	}
}

func trunc(s string) string {
	if len(s) > 20 {
		return s[:20] + fmt.Sprintf("…(%d bytes)", len(s))
	}
	return s
}

func TestReaderSelectsByTailAndSince(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	w, err := Create(path, Options{MaxSize: 1024, MaxFiles: 10})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Unix(1700000000, 0)
	writeNumbered(t, w, base, 0, 60) // spans several rotated files
	w.Close()
	if _, err := os.Stat(path + ".2"); err != nil {
		t.Fatalf("test needs several files: %v", err)
	}
	tests := []struct {
		name string
		opts ReadOptions
		want []string
	}{
		{name: "everything comes back in order", opts: ReadOptions{}, want: numbered(0, 60)},
		{name: "tail returns the last records", opts: ReadOptions{Tail: 5}, want: numbered(55, 60)},
		{name: "tail reaches back across rotated files", opts: ReadOptions{Tail: 45}, want: numbered(15, 60)},
		{name: "a tail longer than the log returns all of it", opts: ReadOptions{Tail: 1000}, want: numbered(0, 60)},
		{name: "since drops older records", opts: ReadOptions{Since: base.Add(50 * time.Second)}, want: numbered(50, 60)},
		{name: "since and tail together take the stricter", opts: ReadOptions{Since: base.Add(57 * time.Second), Tail: 10}, want: numbered(57, 60)},
		{name: "tail within since", opts: ReadOptions{Since: base.Add(10 * time.Second), Tail: 2}, want: numbered(58, 60)},
		{name: "since after the last record returns nothing", opts: ReadOptions{Since: base.Add(time.Hour)}, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := lines(readAll(t, path, tt.opts))
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("got  %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestReaderOfAMissingLogIsEmpty(t *testing.T) {
	if got := readAll(t, filepath.Join(t.TempDir(), "nope", "log"), ReadOptions{Tail: 3}); len(got) != 0 {
		t.Fatalf("got %v", got)
	}
}

func TestReaderSkipsAnIncompleteLastLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	w, _ := Create(path, Options{})
	writeNumbered(t, w, time.Unix(1700000000, 0), 0, 3)
	w.Close()
	rec := appendRecord(nil, Entry{Time: time.Unix(1700000100, 0), Stream: Stdout, Line: "late"})
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.Write(rec[:10])
	for _, opts := range []ReadOptions{{}, {Tail: 2}} {
		if got := lines(readAll(t, path, opts)); got[len(got)-1] != "2" {
			t.Fatalf("%+v: got %v", opts, got)
		}
	}

	// A follower started now sees the record once its newline lands.
	r, err := Open(path, ReadOptions{Tail: 1, Follow: true, PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if e, err := r.Next(ctx); err != nil || e.Line != "2" {
		t.Fatalf("first = %v, %v", e.Line, err)
	}
	f.Write(rec[10:])
	f.Close()
	if e, err := r.Next(ctx); err != nil || e.Line != "late" {
		t.Fatalf("second = %q, %v", e.Line, err)
	}
}

func TestReaderFollowsAcrossRotations(t *testing.T) {
	tests := []struct {
		name     string
		maxSize  int64
		maxFiles int
		poll     time.Duration
	}{
		{name: "one rotation between polls", maxSize: 4096, maxFiles: 50, poll: time.Millisecond},
		{name: "many rotations between polls", maxSize: 256, maxFiles: 1000, poll: 30 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "log")
			w, err := Create(path, Options{MaxSize: tt.maxSize, MaxFiles: tt.maxFiles})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			base := time.Unix(1700000000, 0)
			writeNumbered(t, w, base, 0, 10)
			r, err := Open(path, ReadOptions{Tail: 3, Follow: true, PollInterval: tt.poll})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			const total = 600
			var wg sync.WaitGroup
			wg.Go(func() {
				for i := 10; i < total; i += 10 {
					writeNumbered(t, w, base, i, 10)
					time.Sleep(time.Millisecond)
				}
			})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var got []string
			for len(got) < total-7 {
				e, err := r.Next(ctx)
				if err != nil {
					t.Fatalf("Next after %d records: %v", len(got), err)
				}
				got = append(got, e.Line)
			}
			wg.Wait()
			if want := numbered(7, total); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("records lost or repeated:\n got %v\nwant %v", got, want)
			}
			// And the follower then waits until its context ends.
			short, cancelShort := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancelShort()
			if _, err := r.Next(short); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Next on a quiet log = %v, want the context's error", err)
			}
		})
	}
}

func TestReaderFollowWaitsForTheLogToAppear(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	r, err := Open(path, ReadOptions{Follow: true, PollInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	go func() {
		time.Sleep(30 * time.Millisecond)
		w, err := Create(path, Options{})
		if err != nil {
			return
		}
		writeNumbered(t, w, time.Unix(1700000000, 0), 0, 1)
		w.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if e, err := r.Next(ctx); err != nil || e.Line != "0" {
		t.Fatalf("Next = %+v, %v", e, err)
	}
}

func TestDriverCopiesBothStreamsUntilTheyEnd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	outR, outW, _ := os.Pipe()
	errR, errW, _ := os.Pipe()
	readyCalled := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- drive(context.Background(), DriverConfig{Path: path}, &logging.Config{Stdout: outR, Stderr: errR},
			func() error { close(readyCalled); return nil }, slog.New(slog.DiscardHandler))
	}()
	select {
	case <-readyCalled:
	case <-time.After(5 * time.Second):
		t.Fatal("driver never signalled readiness")
	}
	fmt.Fprintln(outW, "to stdout")
	fmt.Fprintln(errW, "to stderr")
	outW.Close()
	errW.Close()
	if err := <-done; err != nil {
		t.Fatalf("drive: %v", err)
	}
	got := map[string]string{}
	for _, e := range readAll(t, path, ReadOptions{}) {
		got[e.Stream] = e.Line
	}
	if got[Stdout] != "to stdout" || got[Stderr] != "to stderr" {
		t.Fatalf("got %v", got)
	}
}

func TestDriverConfigRoundTrips(t *testing.T) {
	in := DriverConfig{Path: "/var/log/x y/&?=.log", MaxSize: 5, MaxFiles: 2}
	got, err := ParseDriverConfig(in.Arg())
	if err != nil || got != in {
		t.Fatalf("got %+v, %v", got, err)
	}
	if _, err := ParseDriverConfig(`{}`); err == nil {
		t.Fatal("a config without a path was accepted")
	}
}
