package logfile

import (
	"path/filepath"
	"strings"
	"testing"
)

// The guide says a line longer than 512 KiB comes back in lines of that
// size and that --tail N counts whole lines. A tail of 1 of a line of more
// than 256 pieces (4 MiB) stopped looking for its first pieces after 256
// records and returned only its end.
func TestTailReturnsAllOfALineOfManyPieces(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := Create(path, Options{MaxSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	huge := strings.Repeat("y", 300*MaxLineSize) // 4.7 MiB, 300 pieces
	if _, err := w.Copy(Stdout, strings.NewReader("before\n"+huge+"\n")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	tail := readAll(t, path, ReadOptions{Tail: 1})
	var b strings.Builder
	for _, e := range tail {
		b.WriteString(e.Line)
	}
	if b.String() != huge {
		t.Fatalf("tail 1: %d entries, %d bytes; want the whole last line, %d bytes", len(tail), b.Len(), len(huge))
	}
}
