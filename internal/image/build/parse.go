package build

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strings"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// Dockerfile is a parsed Dockerfile: the ARGs before the first FROM and
// one Stage per FROM. Variables are not substituted yet: that needs the
// build's arguments and each stage's environment.
type Dockerfile struct {
	// Name is the file name errors start with ("Dockerfile:7: …").
	Name string
	// Escape is the escape character, \ unless an escape directive says `.
	Escape rune
	// MetaArgs are the ARGs before the first FROM, usable in FROM lines.
	MetaArgs []Instruction
	Stages   []Stage
}

// Stage is one FROM and the instructions up to the next.
type Stage struct {
	// Name is from "FROM image AS name", lower-cased; "" when unnamed.
	Name string
	From Instruction
	// Base is the image reference or stage name, before substitution.
	Base string
	// Platform is the --platform flag of FROM, before substitution.
	Platform     string
	Instructions []Instruction
}

// Instruction is one instruction, its continuation lines joined.
type Instruction struct {
	Line    int    // of the keyword
	Keyword string // upper case, such as "RUN"
	Flags   []Flag
	// Args is the text after the keyword and flags.
	Args string
	// Exec holds the words of the exec (JSON array) form, when IsExec.
	Exec   []string
	IsExec bool
}

// Flag is an instruction flag such as --from=builder.
type Flag struct {
	Name  string
	Value string
}

// String renders the instruction as written (continuations joined), for
// progress lines.
func (in Instruction) String() string {
	var b strings.Builder
	b.WriteString(in.Keyword)
	for _, f := range in.Flags {
		b.WriteString(" --" + f.Name)
		if f.Value != "" {
			b.WriteString("=" + f.Value)
		}
	}
	if in.Args != "" {
		b.WriteString(" " + in.Args)
	}
	return b.String()
}

// flag returns the value of a flag and whether it was given.
func (in Instruction) flag(name string) (string, bool) {
	for _, f := range in.Flags {
		if f.Name == name {
			return f.Value, true
		}
	}
	return "", false
}

// Error is a problem with one line of a Dockerfile, at parse time or when
// its step runs. Its message starts with FILE:LINE, and it unwraps to the
// cause: v1.ErrInvalid or v1.ErrUnsupported for what the Dockerfile says,
// *ExitError when a RUN command fails, or whatever else went wrong.
type Error struct {
	File string
	Line int
	Err  error
}

func (e *Error) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// kindError is a message that unwraps to an error kind of api/v1 without
// showing it.
type kindError struct {
	msg  string
	kind error
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

func invalidf(format string, args ...any) error {
	return &kindError{msg: fmt.Sprintf(format, args...), kind: v1.ErrInvalid}
}

func unsupportedf(format string, args ...any) error {
	return &kindError{msg: fmt.Sprintf(format, args...), kind: v1.ErrUnsupported}
}

// MaxDockerfileSize bounds what Parse reads: a Dockerfile is a short
// script, and anything larger is a mistake (a binary named Dockerfile).
const MaxDockerfileSize = 1 << 20

// unsupported names the instructions Gantry does not build, with what to
// do instead.
var unsupported = map[string]string{
	"HEALTHCHECK": "use health checks in the App manifest",
	"VOLUME":      "Apps have no volumes: keep data in a service outside the container, and mount Secrets with files",
	"ONBUILD":     "write the instructions into the Dockerfile that builds on this image",
	"SHELL":       `use the exec form with the shell you want, e.g. RUN ["/bin/bash", "-c", "…"]`,
	"STOPSIGNAL":  "Gantry stops containers with SIGTERM, then SIGKILL after the grace period",
	"MAINTAINER":  "use LABEL org.opencontainers.image.authors=…",
}

// flagsAllowed lists the flags each instruction takes. Instructions not
// listed take none, and their "--" words are arguments.
var flagsAllowed = map[string][]string{
	"FROM": {"platform"},
	"RUN":  {},
	"COPY": {"from", "chown", "chmod"},
	"ADD":  {"chown", "chmod"},
}

// known lists every instruction Gantry builds.
var known = map[string]bool{
	"FROM": true, "RUN": true, "COPY": true, "ADD": true, "ENV": true, "ARG": true,
	"WORKDIR": true, "USER": true, "EXPOSE": true, "LABEL": true, "ENTRYPOINT": true, "CMD": true,
}

var (
	directiveRE = regexp.MustCompile(`^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.*?)[ \t]*$`)
	stageNameRE = regexp.MustCompile(`^[a-z][a-z0-9._-]*$`)
	argNameRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// A heredoc (RUN <<EOF) spans lines the parser would read as
	// instructions; catch it on its first line.
	heredocRE = regexp.MustCompile(`(^|[^<])<<-?[ \t]*["']?[A-Za-z_][A-Za-z0-9_]*["']?`)
)

// hasHeredoc reports whether a shell-form line starts a heredoc: a <<WORD
// outside quotes and outside shell arithmetic ($((1<<x)) is a shift, and
// echo "a<<b" prints it).
func hasHeredoc(line string) bool {
	var b strings.Builder
	depth := 0 // of $(( … ))
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case depth > 0:
			if strings.HasPrefix(line[i:], "))") {
				depth--
				i++
			} else if strings.HasPrefix(line[i:], "((") {
				depth++
				i++
			}
			continue
		case strings.HasPrefix(line[i:], "$(("):
			depth++
			i += 2
			continue
		case c == '\\' && i+1 < len(line):
			i++
			b.WriteByte(' ')
			continue
		case c == '\'' || c == '"':
			j := i + 1
			for j < len(line) && line[j] != c {
				if c == '"' && line[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(line) {
				return false // an open quote: the shell would fail first
			}
			if quotedDelimiter(b.String()) {
				b.WriteString(line[i : j+1]) // <<'EOF': the quotes are the heredoc's
			} else {
				b.WriteByte(' ')
			}
			i = j
			continue
		}
		b.WriteByte(c)
	}
	return heredocRE.MatchString(b.String())
}

// quotedDelimiter reports whether what comes before a quote ends with
// << or <<- (and blanks): the quote then holds a heredoc's delimiter.
func quotedDelimiter(before string) bool {
	before = strings.TrimRight(before, " \t")
	return strings.HasSuffix(before, "<<") || strings.HasSuffix(before, "<<-")
}

// Parse reads a Dockerfile. name is the file name used in error messages.
// It checks everything that does not depend on build arguments: known and
// supported instructions, flags, the shape of each instruction's
// arguments, and stage names.
func Parse(name string, r io.Reader) (*Dockerfile, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxDockerfileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > MaxDockerfileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes: %w", name, MaxDockerfileSize, v1.ErrInvalid)
	}
	df := &Dockerfile{Name: name, Escape: '\\'}
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(strings.TrimPrefix(string(data), "\ufeff")))
	sc.Buffer(make([]byte, 0, 64<<10), MaxDockerfileSize+1)
	for sc.Scan() {
		lines = append(lines, strings.TrimSuffix(sc.Text(), "\r"))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	fail := func(line int, err error) (*Dockerfile, error) {
		return nil, &Error{File: name, Line: line, Err: err}
	}

	// Parser directives come first, before any instruction, blank line or
	// other comment. syntax and check are BuildKit's and mean nothing
	// here; escape changes the escape character.
	i := 0
	seen := map[string]bool{}
	for ; i < len(lines); i++ {
		m := directiveRE.FindStringSubmatch(lines[i])
		if m == nil {
			break
		}
		key := strings.ToLower(m[1])
		if key != "escape" && key != "syntax" && key != "check" {
			break // an ordinary comment ends the directives
		}
		if seen[key] {
			return fail(i+1, invalidf("the %s directive is given twice", key))
		}
		seen[key] = true
		if key == "escape" {
			switch m[2] {
			case `\`:
				df.Escape = '\\'
			case "`":
				df.Escape = '`'
			default:
				return fail(i+1, invalidf("escape must be \\ or `, not %q", m[2]))
			}
		}
	}

	continuation := regexp.MustCompile(regexp.QuoteMeta(string(df.Escape)) + `[ \t]*$`)
	for i < len(lines) {
		line := lines[i]
		trimmed := strings.TrimLeft(line, " \t")
		if trimmed == "" || trimmed[0] == '#' {
			i++
			continue
		}
		start := i + 1
		var text strings.Builder
		for {
			line = lines[i]
			i++
			loc := continuation.FindStringIndex(line)
			if loc == nil {
				text.WriteString(line)
				break
			}
			text.WriteString(line[:loc[0]])
			// Comment and blank lines inside a continued instruction are
			// dropped, as Docker does.
			for i < len(lines) {
				t := strings.TrimLeft(lines[i], " \t")
				if t != "" && t[0] != '#' {
					break
				}
				i++
			}
			if i >= len(lines) {
				break
			}
		}
		in, err := parseInstruction(start, text.String(), df.Escape)
		if err != nil {
			return fail(start, err)
		}
		if in.Keyword == "FROM" {
			st, err := parseFrom(in, df.Escape)
			if err != nil {
				return fail(start, err)
			}
			if st.Name != "" {
				for _, prev := range df.Stages {
					if prev.Name == st.Name {
						return fail(start, invalidf("stage name %q is used twice (first on line %d)", st.Name, prev.From.Line))
					}
				}
			}
			df.Stages = append(df.Stages, st)
			continue
		}
		if len(df.Stages) == 0 {
			if in.Keyword != "ARG" {
				return fail(start, invalidf("%s before the first FROM: only ARG may come before FROM", in.Keyword))
			}
			df.MetaArgs = append(df.MetaArgs, in)
			continue
		}
		cur := &df.Stages[len(df.Stages)-1]
		cur.Instructions = append(cur.Instructions, in)
	}
	if len(df.Stages) == 0 {
		return nil, fmt.Errorf("%s has no FROM instruction: start it with FROM scratch or FROM an image in the registry: %w", name, v1.ErrInvalid)
	}
	return df, nil
}

// parseInstruction splits one joined instruction into keyword, flags and
// arguments, and checks what can be checked without variables.
func parseInstruction(line int, text string, escape rune) (Instruction, error) {
	text = strings.TrimSpace(text)
	kw, rest, _ := strings.Cut(text, " ")
	if i := strings.IndexAny(kw, "\t"); i >= 0 {
		kw, rest = kw[:i], kw[i+1:]+" "+rest
	}
	in := Instruction{Line: line, Keyword: strings.ToUpper(kw)}
	rest = strings.TrimSpace(rest)
	if hint, ok := unsupported[in.Keyword]; ok {
		return in, unsupportedf("%s is not supported; %s", in.Keyword, hint)
	}
	if !known[in.Keyword] {
		return in, invalidf("unknown instruction %s", printable(kw))
	}

	if allowed, ok := flagsAllowed[in.Keyword]; ok {
		for strings.HasPrefix(rest, "--") {
			word, after, _ := strings.Cut(rest, " ")
			if i := strings.IndexAny(word, "\t"); i >= 0 {
				word, after = word[:i], word[i+1:]+" "+after
			}
			rest = strings.TrimSpace(after)
			fname, value, _ := strings.Cut(word[2:], "=")
			if !contains(allowed, fname) {
				return in, unsupportedf("%s --%s is not supported", in.Keyword, printable(fname))
			}
			if value == "" {
				return in, invalidf("%s --%s needs a value (--%s=…)", in.Keyword, fname, fname)
			}
			if _, twice := in.flag(fname); twice {
				return in, invalidf("%s --%s is given twice", in.Keyword, fname)
			}
			in.Flags = append(in.Flags, Flag{Name: fname, Value: value})
		}
	}
	in.Args = rest

	switch in.Keyword {
	case "RUN", "CMD", "ENTRYPOINT", "COPY", "ADD":
		if strings.HasPrefix(rest, "[") {
			var words []string
			if err := json.Unmarshal([]byte(rest), &words); err == nil {
				in.Exec, in.IsExec = words, true
			}
		}
	}

	switch in.Keyword {
	case "RUN":
		if in.IsExec && len(in.Exec) == 0 || !in.IsExec && rest == "" {
			return in, invalidf("RUN needs a command")
		}
		if !in.IsExec && hasHeredoc(rest) {
			return in, unsupportedf("heredocs (<<EOF) are not supported; put the script in a file, COPY it and RUN it")
		}
	case "CMD", "ENTRYPOINT":
		if !in.IsExec && rest == "" {
			return in, invalidf("%s needs a command, or [] for none", in.Keyword)
		}
	case "COPY", "ADD":
		n := len(in.Exec)
		if !in.IsExec {
			if hasHeredoc(rest) {
				return in, unsupportedf("heredocs (<<EOF) are not supported; put the content in a file in the build context")
			}
			words, err := lexer{escape: escape}.words(rest)
			if err != nil {
				return in, invalidf("%s: %v", in.Keyword, err)
			}
			n = len(words)
		}
		if n < 2 {
			return in, invalidf("%s needs at least one source and a destination", in.Keyword)
		}
	case "ENV", "LABEL":
		if rest == "" {
			return in, invalidf("%s needs at least one KEY=VALUE", in.Keyword)
		}
		if _, err := (lexer{escape: escape}).pairs(rest, in.Keyword); err != nil {
			return in, err
		}
	case "ARG":
		words, err := lexer{escape: escape}.words(rest)
		if err != nil {
			return in, invalidf("ARG: %v", err)
		}
		if len(words) == 0 {
			return in, invalidf("ARG needs a name")
		}
		for _, w := range words {
			n, _, _ := strings.Cut(w, "=")
			if !argNameRE.MatchString(n) {
				return in, invalidf("ARG name %q is not valid: use letters, digits and _", n)
			}
		}
	case "WORKDIR", "USER", "EXPOSE":
		if rest == "" {
			return in, invalidf("%s needs an argument", in.Keyword)
		}
	}
	return in, nil
}

// parseFrom reads "FROM [--platform=P] image [AS name]".
func parseFrom(in Instruction, escape rune) (Stage, error) {
	st := Stage{From: in}
	st.Platform, _ = in.flag("platform")
	words, err := lexer{escape: escape}.words(in.Args)
	if err != nil {
		return st, invalidf("FROM: %v", err)
	}
	// Keep the base unexpanded: split the raw text the same way.
	raw := strings.Fields(in.Args)
	switch {
	case len(words) == 1 && len(raw) == 1:
		st.Base = raw[0]
	case len(words) == 3 && len(raw) == 3 && strings.EqualFold(raw[1], "AS"):
		st.Base = raw[0]
		st.Name = strings.ToLower(raw[2])
		if !stageNameRE.MatchString(st.Name) {
			return st, invalidf("stage name %q is not valid: start with a letter, then letters, digits, '.', '-' or '_'", raw[2])
		}
	default:
		return st, invalidf("FROM takes an image and an optional AS name: FROM IMAGE [AS NAME]")
	}
	return st, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// printable quotes s if it holds anything but letters, digits and a few
// marks, so that an error never carries control characters.
func printable(s string) string {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Sprintf("%q", s)
		}
	}
	return s
}
