package logfile

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fuzzOp is one step of a fuzzed log: a record, or a restart of the writer
// (Close, then Create on the same log).
type fuzzOp struct {
	restart bool
	e       Entry
}

// fuzzOps turns bytes into at most 200 steps (fewer records than the
// bounds of the tail scan, past which it is allowed to differ). Each byte
// picks the stream, whether the record is a piece, and how far the clock
// moves: forward, not at all, or back (a wall clock stepped back).
func fuzzOps(data []byte) []fuzzOp {
	var ops []fuzzOp
	clock := 0
	for i, b := range data {
		if i == 200 {
			break
		}
		step := int(b>>2) & 7
		if step == 7 {
			ops = append(ops, fuzzOp{restart: true})
			continue
		}
		if step == 6 {
			step = -4
		}
		clock += step
		stream := Stdout
		if b&1 == 1 {
			stream = Stderr
		}
		ops = append(ops, fuzzOp{e: Entry{
			Time:    at(float64(clock)),
			Stream:  stream,
			Line:    strconv.Itoa(i) + "/" + strconv.Itoa(int(b>>5)),
			Partial: b&2 == 2,
		}})
	}
	return ops
}

func applyOps(path string, opts Options, w *Writer, ops []fuzzOp) (*Writer, error) {
	for _, op := range ops {
		if op.restart {
			if err := w.Close(); err != nil {
				return w, err
			}
			var err error
			if w, err = Create(path, opts); err != nil {
				return nil, err
			}
			continue
		}
		if err := w.Write(op.e); err != nil {
			return w, err
		}
	}
	return w, nil
}

// lastLines returns the suffix of a read that holds its last n lines (by
// the entries that end one; all when n is zero or there are fewer), and
// the lines still being written after them.
func lastLines(es []Entry, n int) []Entry {
	if n <= 0 {
		return es
	}
	for k := len(es) - 1; k >= 0; k-- {
		if !es[k].Partial {
			if n--; n == 0 {
				return es[k:]
			}
		}
	}
	return es
}

func sameEntries(t *testing.T, what string, got, want []Entry) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		g, w := got[i], want[i]
		ok = g.Time.Equal(w.Time) && g.Stream == w.Stream && g.Line == w.Line && g.Partial == w.Partial
	}
	if !ok {
		t.Fatalf("%s:\n got  %v\n want %v", what, got, want)
	}
}

func sinceOf(s uint8) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return at(float64(s) - 10)
}

// A tail, with or without since, is the suffix of the full read (with the
// same since) that holds its last N lines: the same lines, whole, in the
// same order, also across rotated and deleted files and writer restarts.
func FuzzTailIsASuffixOfTheFullRead(f *testing.F) {
	f.Add([]byte{0, 2, 1, 0, 3, 2, 0, 1}, uint8(2), uint8(0), uint8(0), uint8(0))
	f.Add([]byte{2, 5, 1, 6, 0, 2, 7, 28, 0, 0}, uint8(3), uint8(12), uint8(1), uint8(1))
	f.Add([]byte{2, 1, 1, 1, 1, 0, 26, 3, 2, 0}, uint8(1), uint8(11), uint8(3), uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, tail, since, size, files uint8) {
		tailIsASuffixOfTheFullRead(t, data, tail, since, size, files, false)
	})
}

// The same, for a log written before later pieces were marked ("c"): in
// whole, or in its rotated files only (a writer upgraded at a rotation).
func FuzzTailIsASuffixOfTheFullReadOfAnUnmarkedLog(f *testing.F) {
	f.Add([]byte{2, 2, 0, 1, 0, 3, 2, 0, 1}, uint8(2), uint8(0), uint8(0), uint8(0))
	f.Add([]byte{2, 5, 1, 6, 0, 2, 7, 28, 0, 0}, uint8(3), uint8(12), uint8(1), uint8(1))
	f.Add([]byte{2, 1, 3, 1, 1, 0, 26, 3, 2, 0}, uint8(1), uint8(11), uint8(3), uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, tail, since, size, files uint8) {
		tailIsASuffixOfTheFullRead(t, data, tail, since, size, files, true)
	})
}

func tailIsASuffixOfTheFullRead(t *testing.T, data []byte, tail, since, size, files uint8, unmarked bool) {
	path := filepath.Join(t.TempDir(), "c.log")
	opts := Options{MaxSize: -1, MaxFiles: 1 + int(files)%4}
	if size > 0 {
		opts.MaxSize = 100 + 20*int64(size)
	}
	w, err := Create(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	w, err = applyOps(path, opts, w, fuzzOps(data))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if unmarked {
		// Odd sizes unmark the live file too; even ones leave it as the
		// upgraded writer wrote it, but for size 0, which never rotates.
		unmark(t, path, size%2 == 1 || size == 0)
	}
	ro := ReadOptions{Since: sinceOf(since)}
	full := readAll(t, path, ro)
	ro.Tail = int(tail) % 40
	sameEntries(t, "tail "+strconv.Itoa(ro.Tail), readAll(t, path, ro), lastLines(full, ro.Tail))
}

// unmark takes the "c" marks out of the rotated files of a log, and out
// of the live one too with live: what a writer from before the marks left.
// The mark cannot occur inside a line's text, whose quotes are escaped.
func unmark(t *testing.T, path string, live bool) {
	t.Helper()
	names, err := rotatedFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	if live {
		names = append(names, path)
	}
	for _, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, bytes.ReplaceAll(b, []byte(`,"c":true`), nil), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// A follower opened after the first records (with a tail or not, since or
// not) returns, while the writer goes on (rotating, restarting), what a
// full read returns once the writer is done: all of it, or from the N-th
// last line complete when it opened.
func FuzzFollowSeesWhatAFullReadSees(f *testing.F) {
	f.Add([]byte{0, 2, 1, 0, 3, 2, 0, 1}, uint8(3), uint8(2), uint8(0), uint8(0))
	f.Add([]byte{2, 5, 1, 6, 0, 2, 7, 28, 0, 0, 2, 2, 0}, uint8(5), uint8(1), uint8(12), uint8(1))
	f.Add([]byte{2, 1, 1, 1, 1, 0, 26, 3, 2, 0, 2, 31, 0}, uint8(6), uint8(0), uint8(11), uint8(3))
	f.Fuzz(func(t *testing.T, data []byte, split, tail, since, size uint8) {
		path := filepath.Join(t.TempDir(), "c.log")
		// Rotate often, but keep every file: what was deleted is not in
		// the full read at the end.
		opts := Options{MaxSize: -1, MaxFiles: 1000}
		if size > 0 {
			opts.MaxSize = 100 + 20*int64(size)
		}
		ops := fuzzOps(data)
		before := ops[:min(int(split), len(ops))]
		w, err := Create(path, opts)
		if err != nil {
			t.Fatal(err)
		}
		if w, err = applyOps(path, opts, w, before); err != nil {
			t.Fatal(err)
		}
		ro := ReadOptions{Since: sinceOf(since), Tail: int(tail) % 10}
		complete := 0
		for _, e := range readAll(t, path, ReadOptions{Since: ro.Since}) {
			if !e.Partial {
				complete++
			}
		}
		ro.Follow, ro.PollInterval = true, time.Millisecond
		r, err := Open(path, ro)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()

		// The writer goes on while the follower reads; Close ends the
		// lines left open, and a last line after a restart marks the end.
		const last = "the end"
		// Well within the fuzzer's 10 s limit for an input.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		wrote := make(chan error, 1)
		go func() {
			w, err := applyOps(path, opts, w, append(ops[len(before):len(ops):len(ops)],
				fuzzOp{restart: true}, fuzzOp{e: Entry{Time: at(1e6), Stream: Stdout, Line: last}}))
			if w != nil {
				err = errors.Join(err, w.Close())
			}
			if err != nil {
				cancel()
			}
			wrote <- err
		}()
		var got []Entry
		// The last line glued to pieces of another also ends the read.
		for len(got) == 0 || !strings.HasSuffix(got[len(got)-1].Line, last) {
			e, err := r.Next(ctx)
			if err != nil {
				t.Fatalf("Next after %v: %v (writer: %v)", got, err, <-wrote)
			}
			got = append(got, e)
		}
		if err := <-wrote; err != nil {
			t.Fatal(err)
		}

		want := readAll(t, path, ReadOptions{Since: ro.Since})
		if ro.Tail > 0 {
			want = want[max(0, complete-ro.Tail):]
		}
		sameEntries(t, "follower", got, want)
	})
}
