package logfile

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tailFiles counts lines by their last piece and stopped at the (n+1)th
// line end seen backwards. When a record of the other stream sat between
// two pieces of a line (as TestLongLinesAreReadWhole writes), that record
// stopped the scan before the line's first piece: --tail 1 gave "b" (the
// last piece alone) instead of the whole line "a-b".
func TestTailKeepsEveryPieceOfAnInterleavedLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := Create(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range []Entry{
		{Stream: Stdout, Line: "first"},
		{Stream: Stdout, Line: "a-", Partial: true},
		{Stream: Stderr, Line: "between"},
		{Stream: Stdout, Line: "b"},
	} {
		e.Time = time.Now().Add(time.Duration(i) * time.Millisecond)
		if err := w.Write(e); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	got := lines(readAll(t, path, ReadOptions{Tail: 1}))
	if strings.Join(got, "|") != "a-b" {
		t.Errorf("tail 1 = %q; want [a-b] (the last line whole, not its last piece)", got)
	}
}
