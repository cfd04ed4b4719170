package build

import (
	"bufio"
	"fmt"
	"io"
	"path"
	"regexp"
	"strings"
)

// ignorer decides which paths of the build context a .dockerignore
// excludes, with Docker's rules: one pattern a line, # starts a comment
// line, a leading ! re-includes what earlier patterns excluded, the last
// matching pattern wins, * and ? do not cross /, ** matches any number of
// directories, and a pattern that matches a directory excludes everything
// below it.
type ignorer struct {
	patterns []ignorePattern
}

type ignorePattern struct {
	text    string
	re      *regexp.Regexp
	include bool // a ! pattern
}

// parseIgnore reads a .dockerignore. A nil reader means no file.
func parseIgnore(r io.Reader) (*ignorer, error) {
	ig := &ignorer{}
	if r == nil {
		return ig, nil
	}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if n == 1 {
			// A file saved with a byte-order mark (Windows editors) must
			// not lose its first pattern to it, as in BuildKit.
			line = strings.TrimPrefix(line, "\ufeff")
		}
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		include := false
		if strings.HasPrefix(line, "!") {
			include = true
			line = strings.TrimSpace(line[1:])
		}
		// Patterns are paths relative to the context root, whatever their
		// leading slash or ./ says.
		p := strings.TrimPrefix(path.Clean("/"+line), "/")
		if p == "" {
			p = "."
		}
		re, err := compileIgnore(p)
		if err != nil {
			return nil, fmt.Errorf(".dockerignore:%d: pattern %q: %w", n, line, err)
		}
		ig.patterns = append(ig.patterns, ignorePattern{text: p, re: re, include: include})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read .dockerignore: %w", err)
	}
	return ig, nil
}

// compileIgnore turns a pattern into an anchored regular expression.
func compileIgnore(p string) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString("^")
	rs := []rune(p)
	for i := 0; i < len(rs); i++ {
		c := rs[i]
		switch c {
		case '*':
			if i+1 < len(rs) && rs[i+1] == '*' {
				i++
				switch {
				case i+1 == len(rs):
					b.WriteString(".*")
				case rs[i+1] == '/':
					i++
					b.WriteString("(.*/)?")
				default:
					b.WriteString(".*")
				}
				continue
			}
			b.WriteString("[^/]*")
		case '?':
			b.WriteString("[^/]")
		case '[':
			j := i + 1
			if j < len(rs) && (rs[j] == '!' || rs[j] == '^') {
				j++
			}
			if j < len(rs) && rs[j] == ']' {
				j++
			}
			for j < len(rs) && rs[j] != ']' {
				j++
			}
			if j >= len(rs) {
				return nil, fmt.Errorf("unterminated [")
			}
			class := string(rs[i+1 : j])
			if strings.HasPrefix(class, "!") {
				class = "^" + class[1:]
			}
			class = strings.ReplaceAll(class, `\`, `\\`)
			b.WriteString("[" + class + "]")
			i = j
		case '\\':
			if i+1 < len(rs) {
				i++
				b.WriteString(regexp.QuoteMeta(string(rs[i])))
			} else {
				b.WriteString(`\\`)
			}
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}

// ignored reports whether rel (slash-separated, relative to the context
// root) is excluded: the last pattern that matches it or one of its
// parent directories decides.
func (ig *ignorer) ignored(rel string) bool {
	if ig == nil || len(ig.patterns) == 0 {
		return false
	}
	rel = strings.TrimPrefix(path.Clean("/"+rel), "/")
	if rel == "" {
		return false // the context root itself is never excluded
	}
	// The path and each of its parents, shortest first.
	var prefixes []string
	for i := 0; i < len(rel); i++ {
		if rel[i] == '/' {
			prefixes = append(prefixes, rel[:i])
		}
	}
	prefixes = append(prefixes, rel)
	excluded := false
	for _, p := range ig.patterns {
		for _, candidate := range prefixes {
			if p.re.MatchString(candidate) {
				excluded = !p.include
				break
			}
		}
	}
	return excluded
}

// hasIncludes reports whether any ! pattern exists, in which case an
// excluded directory may still hold included files and must be walked.
func (ig *ignorer) hasIncludes() bool {
	if ig == nil {
		return false
	}
	for _, p := range ig.patterns {
		if p.include {
			return true
		}
	}
	return false
}
