package build

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

func mustParse(t *testing.T, text string) *Dockerfile {
	t.Helper()
	df, err := Parse("Dockerfile", strings.NewReader(text))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return df
}

func TestParse(t *testing.T) {
	t.Run("continuations are joined and comments inside them dropped", func(t *testing.T) {
		df := mustParse(t, "FROM scratch\nRUN echo a \\\n# a comment\n\n  && echo b \\  \n  && echo c\nCMD x\n")
		ins := df.Stages[0].Instructions
		if len(ins) != 2 {
			t.Fatalf("instructions = %+v", ins)
		}
		if ins[0].Args != "echo a   && echo b   && echo c" || ins[0].Line != 2 {
			t.Fatalf("RUN = %q on line %d", ins[0].Args, ins[0].Line)
		}
		if ins[1].Line != 7 {
			t.Fatalf("CMD on line %d, want 7", ins[1].Line)
		}
	})
	t.Run("the escape directive changes the continuation character", func(t *testing.T) {
		df := mustParse(t, "# syntax=docker/dockerfile:1\n# escape=`\nFROM scratch\nRUN dir c:\\ `\n  /w\n")
		if df.Escape != '`' {
			t.Fatalf("escape = %q", df.Escape)
		}
		if got := df.Stages[0].Instructions[0].Args; got != `dir c:\   /w` {
			t.Fatalf("RUN = %q", got)
		}
	})
	t.Run("a directive after a comment is an ordinary comment", func(t *testing.T) {
		df := mustParse(t, "# hello\n# escape=`\nFROM scratch\nRUN a \\\n b\n")
		if df.Escape != '\\' || df.Stages[0].Instructions[0].Args != "a  b" {
			t.Fatalf("escape %q, RUN %q", df.Escape, df.Stages[0].Instructions[0].Args)
		}
	})
	t.Run("exec and shell forms are told apart", func(t *testing.T) {
		df := mustParse(t, "FROM scratch\nCMD [\"/app\", \"--port\", \"80\"]\nENTRYPOINT /app serve\nRUN [not json\n")
		ins := df.Stages[0].Instructions
		if !ins[0].IsExec || !reflect.DeepEqual(ins[0].Exec, []string{"/app", "--port", "80"}) {
			t.Fatalf("CMD = %+v", ins[0])
		}
		if ins[1].IsExec || ins[1].Args != "/app serve" {
			t.Fatalf("ENTRYPOINT = %+v", ins[1])
		}
		if ins[2].IsExec || ins[2].Args != "[not json" {
			t.Fatalf("RUN = %+v", ins[2])
		}
	})
	t.Run("flags, stages and meta ARGs are read", func(t *testing.T) {
		df := mustParse(t, "ARG V=1\nfrom --platform=linux/amd64 library/busybox:$V AS Builder\nrun true\nFROM scratch\ncopy --from=builder --chown=1:2 /a /b/\n")
		if len(df.MetaArgs) != 1 || df.MetaArgs[0].Args != "V=1" {
			t.Fatalf("meta args = %+v", df.MetaArgs)
		}
		if len(df.Stages) != 2 {
			t.Fatalf("stages = %+v", df.Stages)
		}
		s0 := df.Stages[0]
		if s0.Name != "builder" || s0.Base != "library/busybox:$V" || s0.Platform != "linux/amd64" {
			t.Fatalf("stage 0 = %+v", s0)
		}
		cp := df.Stages[1].Instructions[0]
		if cp.Keyword != "COPY" || !reflect.DeepEqual(cp.Flags, []Flag{{"from", "builder"}, {"chown", "1:2"}}) || cp.Args != "/a /b/" {
			t.Fatalf("COPY = %+v", cp)
		}
		if cp.String() != "COPY --from=builder --chown=1:2 /a /b/" {
			t.Fatalf("String = %q", cp.String())
		}
	})
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name, text, want string
		kind             error
	}{
		{"HEALTHCHECK names its line and says what to use", "FROM scratch\n\n# c\nCOPY a /a\nENV A=1\nRUN x\nHEALTHCHECK CMD true\n",
			"Dockerfile:7: HEALTHCHECK is not supported; use health checks in the App manifest", v1.ErrUnsupported},
		{"VOLUME is not supported", "FROM scratch\nVOLUME /data\n", "Dockerfile:2: VOLUME is not supported; Apps have no volumes: keep data in a service outside the container, and mount Secrets with files", v1.ErrUnsupported},
		{"ONBUILD is not supported", "FROM scratch\nonbuild RUN x\n", "Dockerfile:2: ONBUILD is not supported", v1.ErrUnsupported},
		{"SHELL is not supported", "FROM scratch\nSHELL [\"/bin/bash\", \"-c\"]\n", "Dockerfile:2: SHELL is not supported", v1.ErrUnsupported},
		{"STOPSIGNAL is not supported", "FROM scratch\nSTOPSIGNAL SIGINT\n", "Dockerfile:2: STOPSIGNAL is not supported", v1.ErrUnsupported},
		{"MAINTAINER is not supported", "FROM scratch\nMAINTAINER me\n", "Dockerfile:2: MAINTAINER is not supported; use LABEL", v1.ErrUnsupported},
		{"an unsupported instruction after a continuation names its first line", "FROM scratch\nRUN a \\\n  b\nHEALTHCHECK \\\n NONE\n", "Dockerfile:4: HEALTHCHECK", v1.ErrUnsupported},
		{"an unknown instruction is named", "FROM scratch\nFOO bar\n", "Dockerfile:2: unknown instruction FOO", v1.ErrInvalid},
		{"RUN before FROM is refused", "RUN x\nFROM scratch\n", "Dockerfile:1: RUN before the first FROM", v1.ErrInvalid},
		{"a file without FROM is refused", "# nothing\nARG A\n", "Dockerfile has no FROM", v1.ErrInvalid},
		{"COPY needs a destination", "FROM scratch\nCOPY onlyone\n", "Dockerfile:2: COPY needs at least one source and a destination", v1.ErrInvalid},
		{"RUN --mount is not supported", "FROM scratch\nRUN --mount=type=cache,target=/x make\n", "Dockerfile:2: RUN --mount is not supported", v1.ErrUnsupported},
		{"COPY --link is not supported", "FROM scratch\nCOPY --link=true a /a\n", "Dockerfile:2: COPY --link is not supported", v1.ErrUnsupported},
		{"ADD --checksum is not supported", "FROM scratch\nADD --checksum=sha256:x a /a\n", "Dockerfile:2: ADD --checksum is not supported", v1.ErrUnsupported},
		{"a flag given twice is refused", "FROM scratch\nCOPY --chown=1 --chown=2 a /a\n", "Dockerfile:2: COPY --chown is given twice", v1.ErrInvalid},
		{"a heredoc is refused on its first line", "FROM scratch\nRUN <<EOF\necho hi\nEOF\n", "Dockerfile:2: heredocs", v1.ErrUnsupported},
		{"a stage name is used once", "FROM scratch AS a\nFROM scratch AS a\n", "Dockerfile:2: stage name \"a\" is used twice (first on line 1)", v1.ErrInvalid},
		{"a stage name must be valid", "FROM scratch AS 1abc\n", "Dockerfile:1: stage name \"1abc\" is not valid", v1.ErrInvalid},
		{"FROM takes at most an AS name", "FROM a b c d\n", "Dockerfile:1: FROM takes an image", v1.ErrInvalid},
		{"ENV needs a value", "FROM scratch\nENV A\n", "Dockerfile:2: ENV A needs a value", v1.ErrInvalid},
		{"ENV pairs need =", "FROM scratch\nENV A=1 B\n", `Dockerfile:2: ENV: "B" is not KEY=VALUE`, v1.ErrInvalid},
		{"ARG names are checked", "FROM scratch\nARG 9x\n", "Dockerfile:2: ARG name \"9x\" is not valid", v1.ErrInvalid},
		{"an unterminated quote is reported", "FROM scratch\nCOPY \"a /b\n", "Dockerfile:2: COPY: unterminated double quote", v1.ErrInvalid},
		{"a bad escape directive is reported", "# escape=x\nFROM scratch\n", "Dockerfile:1: escape must be", v1.ErrInvalid},
		{"CMD needs something", "FROM scratch\nCMD\n", "Dockerfile:2: CMD needs a command", v1.ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("Dockerfile", strings.NewReader(c.text))
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			if !strings.HasPrefix(err.Error(), c.want) {
				t.Fatalf("error = %q, want it to start with %q", err, c.want)
			}
			if !errors.Is(err, c.kind) {
				t.Fatalf("error %q is not %v", err, c.kind)
			}
		})
	}
}

func TestLexer(t *testing.T) {
	env := map[string]string{"A": "alpha", "EMPTY": "", "SP": "a b"}
	lx := lexer{escape: '\\', lookup: func(n string) (string, bool) { v, ok := env[n]; return v, ok }}
	cases := []struct {
		in   string
		want []string
		err  string
	}{
		{in: "$A ${A}x", want: []string{"alpha", "alphax"}},
		{in: `'$A' "$A b" \$A`, want: []string{"$A", "alpha b", "$A"}},
		{in: `"a\"b" 'it''s'`, want: []string{`a"b`, "its"}},
		{in: "${NOPE:-def} ${EMPTY:-def} ${EMPTY-def} ${A:+yes} ${NOPE+yes}x", want: []string{"def", "def", "yes", "x"}},
		{in: "${NOPE:-${A}-nested}", want: []string{"alpha-nested"}},
		{in: `"" $EMPTY end`, want: []string{"", "end"}},
		{in: "$SP", want: []string{"a b"}},
		{in: "cost $ 5 $", want: []string{"cost", "$", "5", "$"}},
		{in: "${NOPE:?must be set}", err: "NOPE: must be set"},
		{in: "${A#x}", err: "unsupported substitution"},
		{in: "${A", err: "missing }"},
		{in: "'open", err: "unterminated single quote"},
	}
	for _, c := range cases {
		got, err := lx.words(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("words(%q) error = %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("words(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	t.Run("ENV pairs substitute with the values before the instruction", func(t *testing.T) {
		got, err := lx.pairs(`A=new B=$A C="x y" D=`, "ENV")
		want := [][2]string{{"A", "new"}, {"B", "alpha"}, {"C", "x y"}, {"D", ""}}
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("pairs = %q, %v", got, err)
		}
		got, err = lx.pairs("KEY the value is $A", "ENV")
		if err != nil || !reflect.DeepEqual(got, [][2]string{{"KEY", "the value is alpha"}}) {
			t.Fatalf("legacy pairs = %q, %v", got, err)
		}
	})
}

func TestIgnore(t *testing.T) {
	ig, err := parseIgnore(strings.NewReader("# comment\n*.log\n/secret\n**/tmp\n!keep.log\nbuild/\n!build/out.bin\ndocs/**/*.md\n"))
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]bool{
		"a.log":              true,
		"keep.log":           false,
		"dir/a.log":          false, // * does not cross /
		"secret":             true,
		"secret/inner":       true, // below an excluded directory
		"tmp":                true,
		"x/y/tmp/z":          true,
		"build/other":        true,
		"build/out.bin":      false,
		"docs/a/b/c.md":      true,
		"docs/c.md":          true,
		"docs/c.txt":         false,
		"main.go":            false,
		"secretive/file.txt": false,
	}
	for p, want := range cases {
		if got := ig.ignored(p); got != want {
			t.Errorf("ignored(%q) = %v, want %v", p, got, want)
		}
	}
	if !ig.hasIncludes() {
		t.Error("hasIncludes = false")
	}
}

func TestParsePorts(t *testing.T) {
	got, err := parsePorts("8000-8002/udp")
	if err != nil || !reflect.DeepEqual(got, []string{"8000/udp", "8001/udp", "8002/udp"}) {
		t.Fatalf("parsePorts = %v, %v", got, err)
	}
	for _, bad := range []string{"0", "70000", "80/icmp", "x", "9-1", "1-60000"} {
		if _, err := parsePorts(bad); err == nil {
			t.Errorf("parsePorts(%q) succeeded", bad)
		}
	}
}

// A heredoc starts with <<WORD outside quotes and shell arithmetic; the
// same characters inside them are the shell's, not a heredoc.
func TestHasHeredoc(t *testing.T) {
	for line, want := range map[string]bool{
		"<<EOF":                        true,
		"cat <<-'EOF' > /x":            true,
		`python3 <<"PY"`:               true,
		`echo "1<<x"`:                  false,
		`echo '<<EOF'`:                 false,
		`echo $((1<<x))`:               false,
		`echo $(( (a<<b) + 1 )) <<EOF`: true,
		`echo a\<<EOF`:                 false,
		`printf '%s' "it's" <<END`:     true,
		"echo hi":                      false,
	} {
		if got := hasHeredoc(line); got != want {
			t.Errorf("hasHeredoc(%q) = %v, want %v", line, got, want)
		}
	}
}
