package logfile

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// With a tail, the since cut stopped the backward scan at the first record
// older than since. A record written after the wall clock stepped back is
// such a record: the lines newer than since before it were lost, although
// a read with since alone (which filters record by record) returned them.
func TestTailWithSinceKeepsLinesFromBeforeAClockStepBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := Create(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, e := range []Entry{
		{Time: base, Stream: Stdout, Line: "too old"},
		{Time: base.Add(20 * time.Second), Stream: Stdout, Line: "a"},
		{Time: base.Add(5 * time.Second), Stream: Stdout, Line: "b (clock stepped back)"},
		{Time: base.Add(25 * time.Second), Stream: Stdout, Line: "c"},
	} {
		if err := w.Write(e); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	since := base.Add(10 * time.Second)
	for _, tc := range []struct {
		opts ReadOptions
		want string
	}{
		{ReadOptions{Since: since}, "a|c"},
		{ReadOptions{Since: since, Tail: 100}, "a|c"},
		{ReadOptions{Since: since, Tail: 1}, "c"},
	} {
		if got := strings.Join(lines(readAll(t, path, tc.opts)), "|"); got != tc.want {
			t.Errorf("since with tail %d: %q, want %q", tc.opts.Tail, got, tc.want)
		}
	}
}
