package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"text/tabwriter"
)

// indent adds two spaces at each line start, however the writes that
// reach it split the lines: a tabwriter writes a cell at a time, and
// indenting each write misaligned describe's tables.
func TestIndentIndentsLinesNotWrites(t *testing.T) {
	var buf bytes.Buffer
	in := &indent{w: &buf}
	for _, piece := range []string{"NAME", "   APP\nhello-1", "  hello\n", "\n", "last"} {
		fmt.Fprint(in, piece)
	}
	if got, want := buf.String(), "  NAME   APP\n  hello-1  hello\n  \n  last"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}

	buf.Reset()
	tw := tabwriter.NewWriter(&indent{w: &buf}, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tAPP\tPHASE")
	fmt.Fprintln(tw, "hello-527lw\thello\tRunning")
	tw.Flush()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 2 || strings.Index(lines[0], "APP") != strings.Index(lines[1], "hello ") {
		t.Errorf("columns do not line up:\n%s", buf.String())
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "  ") || strings.HasPrefix(l, "   ") {
			t.Errorf("line %q is not indented by exactly two spaces", l)
		}
	}
}
