package build

import (
	"strings"
	"testing"
)

// FuzzParse feeds the parser arbitrary text: it must not panic, and what
// it accepts must be consistent.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"FROM scratch\nCOPY a /b\n",
		"# escape=`\nFROM x AS y\nRUN a `\n b\n",
		"ARG A=1\nFROM busybox:$A\nRUN [\"sh\", \"-c\", \"echo\"]\nENV A=\"b c\" D='e'\n",
		"FROM a\nLABEL a=b c=\"d e\"\nEXPOSE 80/tcp\nCMD [\nHEALTHCHECK NONE\n",
		"FROM scratch\nCOPY --from=x --chown=1:1 ${A:-b} /c/\nADD t.tar.gz /\n",
		"\ufeffFROM scratch\r\nUSER nobody\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		df, err := Parse("Dockerfile", strings.NewReader(text))
		if err != nil {
			return
		}
		lines := strings.Count(text, "\n") + 1
		if len(df.Stages) == 0 {
			t.Fatal("accepted a Dockerfile without stages")
		}
		for _, st := range df.Stages {
			if st.From.Keyword != "FROM" {
				t.Fatalf("stage starts with %s", st.From.Keyword)
			}
			last := st.From.Line
			for _, in := range st.Instructions {
				if in.Line <= last || in.Line > lines {
					t.Fatalf("instruction %s on line %d after line %d of %d", in.Keyword, in.Line, last, lines)
				}
				last = in.Line
				if !known[in.Keyword] || in.Keyword == "FROM" {
					t.Fatalf("accepted instruction %q", in.Keyword)
				}
			}
		}
	})
}

// FuzzLexer checks that substitution never panics and that a word with
// no quotes, escapes or $ comes back as it was.
func FuzzLexer(f *testing.F) {
	for _, s := range []string{"$A ${B:-c}", `"a b" 'c'`, `\$x ${A:+${B}}`, "${", "plain words"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lx := lexer{escape: '\\', lookup: func(n string) (string, bool) { return "v", n == "A" }}
		_, _ = lx.words(s)
		_, _ = lx.word(s)
		_, _ = lx.pairs(s, "ENV")
		if !strings.ContainsAny(s, "\"'\\$") {
			w, err := lx.word(s)
			if err != nil || w != s {
				t.Fatalf("word(%q) = %q, %v", s, w, err)
			}
		}
	})
}

// FuzzIgnore checks that any .dockerignore either fails to parse or
// answers for any path without panicking.
func FuzzIgnore(f *testing.F) {
	f.Add("*.log\n!keep.log\n**/tmp\n[a-z]?\n", "dir/keep.log")
	f.Fuzz(func(t *testing.T, patterns, p string) {
		ig, err := parseIgnore(strings.NewReader(patterns))
		if err != nil {
			return
		}
		_ = ig.ignored(p)
	})
}
