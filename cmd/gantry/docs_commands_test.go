package main

import (
	"bufio"
	"os"
	"regexp"
	"strings"
	"testing"
)

// Every gantry command line in a code block of README.md and docs/*.md
// names a command, flags and an argument count the CLI accepts.
func TestDocumentedCommandsParse(t *testing.T) {
	files := []string{"../../README.md", "../../docs/guide.md", "../../docs/manifest.md", "../../docs/api.md"}
	lineRe := regexp.MustCompile(`^\s*(?:\$ |sudo )?(?:bin/)?gantry (.*)$`)
	checked := 0
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		inb := false
		n := 0
		for sc.Scan() {
			n++
			l := sc.Text()
			if strings.HasPrefix(strings.TrimSpace(l), "```") {
				inb = !inb
				continue
			}
			if !inb {
				continue
			}
			m := lineRe.FindStringSubmatch(l)
			if m == nil {
				continue
			}
			rest := m[1]
			if i := strings.Index(rest, " #"); i >= 0 {
				rest = rest[:i]
			}
			for _, cut := range []string{" > ", " | ", " && ", " ; "} {
				if i := strings.Index(rest, cut); i >= 0 {
					rest = rest[:i]
				}
			}
			checked++
			args := strings.Fields(rest)
			root := newRootCmd()
			cmd, left, err := root.Find(args)
			if err != nil {
				t.Errorf("%s:%d: gantry %s: %v", f, n, rest, err)
				continue
			}
			if err := cmd.ParseFlags(left); err != nil {
				t.Errorf("%s:%d: gantry %s: %v", f, n, rest, err)
				continue
			}
			pos := cmd.Flags().Args()
			if cmd.Args != nil {
				if err := cmd.ValidateArgs(pos); err != nil {
					t.Errorf("%s:%d: gantry %s: %v", f, n, rest, err)
				}
			}
		}
		fh.Close()
	}
	if checked < 80 {
		t.Errorf("only %d gantry command lines found in the docs' code blocks: the pattern no longer matches them", checked)
	}
}
