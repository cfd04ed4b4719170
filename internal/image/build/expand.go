package build

import (
	"errors"
	"fmt"
	"strings"
)

// lexer splits and substitutes the arguments of the instructions where
// Docker substitutes variables (FROM, COPY, ADD, ENV, ARG, LABEL, EXPOSE,
// USER, WORKDIR), with the rules of Docker's shell-like word lexer:
//
//   - whitespace separates words, except inside quotes;
//   - 'single quotes' keep everything literally;
//   - "double quotes" keep whitespace and substitute variables; the
//     escape character escapes ", $ and itself there;
//   - the escape character outside quotes makes the next character
//     literal;
//   - $NAME and ${NAME} substitute, and so do ${NAME:-word},
//     ${NAME-word}, ${NAME:+word}, ${NAME+word}, ${NAME:?message} and
//     ${NAME?message}; a $ before anything else is a literal $.
//
// RUN, CMD and ENTRYPOINT are not substituted: their shell does it when
// they run, with the ARGs and ENVs in its environment.
type lexer struct {
	escape rune
	// lookup returns a variable's value and whether it is set. Nil means
	// "parse only": every variable is set to a placeholder, so the shape
	// of the arguments can be checked before any value is known.
	lookup func(name string) (string, bool)
}

// maxExpansion bounds the text substitution may produce, so that nested
// ${A:-${A:-…}} cannot blow up.
const maxExpansion = 1 << 20

// esc is the escape character as a byte: it is always ASCII (\ or `), and
// the lexer works on bytes so that text that is not UTF-8 passes through
// unchanged.
func (lx lexer) esc() byte { return byte(lx.escape) }

func (lx lexer) get(name string) (string, bool) {
	if lx.lookup == nil {
		return "x", true
	}
	return lx.lookup(name)
}

// words substitutes s and splits it into words.
func (lx lexer) words(s string) ([]string, error) {
	return lx.process([]byte(s), true)
}

// word substitutes s as one word: whitespace is kept.
func (lx lexer) word(s string) (string, error) {
	ws, err := lx.process([]byte(s), false)
	if err != nil || len(ws) == 0 {
		return "", err
	}
	return ws[0], nil
}

func (lx lexer) process(rs []byte, split bool) ([]string, error) {
	var words []string
	var cur strings.Builder
	has := false // cur holds a word, perhaps an empty quoted one
	flush := func() {
		if has {
			words = append(words, cur.String())
		}
		cur.Reset()
		has = false
	}
	for i := 0; i < len(rs); {
		if cur.Len() > maxExpansion {
			return nil, errors.New("substitution result too long")
		}
		c := rs[i]
		switch {
		case split && (c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			flush()
			i++
		case c == lx.esc():
			if i+1 < len(rs) {
				cur.WriteByte(rs[i+1])
				i += 2
			} else {
				cur.WriteByte(c)
				i++
			}
			has = true
		case c == '\'':
			j := i + 1
			for j < len(rs) && rs[j] != '\'' {
				j++
			}
			if j >= len(rs) {
				return nil, errors.New("unterminated single quote")
			}
			cur.WriteString(string(rs[i+1 : j]))
			i = j + 1
			has = true
		case c == '"':
			i++
			closed := false
			for i < len(rs) {
				d := rs[i]
				if d == '"' {
					closed = true
					i++
					break
				}
				if d == lx.esc() && i+1 < len(rs) && (rs[i+1] == '"' || rs[i+1] == '$' || rs[i+1] == lx.esc()) {
					cur.WriteByte(rs[i+1])
					i += 2
					continue
				}
				if d == '$' {
					v, n, err := lx.dollar(rs, i)
					if err != nil {
						return nil, err
					}
					cur.WriteString(v)
					i = n
					continue
				}
				cur.WriteByte(d)
				i++
			}
			if !closed {
				return nil, errors.New("unterminated double quote")
			}
			has = true
		case c == '$':
			v, n, err := lx.dollar(rs, i)
			if err != nil {
				return nil, err
			}
			cur.WriteString(v)
			if v != "" || n-i == 1 {
				has = true
			}
			i = n
		default:
			cur.WriteByte(c)
			i++
			has = true
		}
	}
	flush()
	if !split && len(words) == 0 {
		words = []string{""}
	}
	return words, nil
}

func isNameByte(r byte) bool {
	return r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}

// dollar substitutes the variable reference at rs[i] ('$') and returns
// its value and the index after it.
func (lx lexer) dollar(rs []byte, i int) (string, int, error) {
	j := i + 1
	if j >= len(rs) {
		return "$", j, nil
	}
	if isNameByte(rs[j]) {
		for j < len(rs) && isNameByte(rs[j]) {
			j++
		}
		v, _ := lx.get(string(rs[i+1 : j]))
		return v, j, nil
	}
	if rs[j] != '{' {
		return "$", j, nil
	}
	j++
	start := j
	for j < len(rs) && isNameByte(rs[j]) {
		j++
	}
	name := string(rs[start:j])
	if name == "" {
		return "", 0, errors.New("bad substitution: ${} needs a variable name")
	}
	if j >= len(rs) {
		return "", 0, fmt.Errorf("missing } after ${%s", name)
	}
	if rs[j] == '}' {
		v, _ := lx.get(name)
		return v, j + 1, nil
	}
	colon := false
	if rs[j] == ':' {
		colon = true
		j++
	}
	if j >= len(rs) || !strings.ContainsRune("-+?", rune(rs[j])) {
		return "", 0, fmt.Errorf("unsupported substitution in ${%s…}: use ${NAME}, ${NAME:-default}, ${NAME:+alternative} or ${NAME:?message}", name)
	}
	op := rs[j]
	j++
	// The operand runs to the matching }, past nested ${…} and quotes.
	wstart, depth := j, 1
	for j < len(rs) {
		switch {
		case rs[j] == lx.esc():
			j++
		case rs[j] == '$' && j+1 < len(rs) && rs[j+1] == '{':
			depth++
			j++
		case rs[j] == '}':
			depth--
		}
		if depth == 0 {
			break
		}
		j++
	}
	if j >= len(rs) {
		return "", 0, fmt.Errorf("missing } after ${%s", name)
	}
	operand := rs[wstart:j]
	val, set := lx.get(name)
	empty := !set || colon && val == ""
	word := func() (string, error) {
		ws, err := lx.process(operand, false)
		if err != nil {
			return "", err
		}
		return ws[0], nil
	}
	switch op {
	case '-':
		if empty {
			w, err := word()
			return w, j + 1, err
		}
		return val, j + 1, nil
	case '+':
		if empty {
			return "", j + 1, nil
		}
		w, err := word()
		return w, j + 1, err
	default: // '?'
		if empty {
			w, err := word()
			if err != nil {
				return "", 0, err
			}
			if w == "" {
				w = "is not set"
			}
			return "", 0, fmt.Errorf("%s: %s", name, w)
		}
		return val, j + 1, nil
	}
}

// pairs reads the KEY=VALUE arguments of ENV and LABEL, substituted. The
// legacy one-pair form "ENV KEY the value" is accepted too.
func (lx lexer) pairs(s, keyword string) ([][2]string, error) {
	first, rest, _ := strings.Cut(strings.TrimSpace(s), " ")
	if i := strings.IndexAny(first, "\t"); i >= 0 {
		first, rest = first[:i], first[i+1:]+" "+rest
	}
	if !strings.Contains(first, "=") {
		// Legacy form: the key, then the rest of the line as the value.
		key, err := lx.word(first)
		if err != nil {
			return nil, invalidf("%s: %v", keyword, err)
		}
		rest = strings.TrimSpace(rest)
		if rest == "" {
			return nil, invalidf("%s %s needs a value: %s %s=VALUE", keyword, key, keyword, key)
		}
		val, err := lx.word(rest)
		if err != nil {
			return nil, invalidf("%s: %v", keyword, err)
		}
		if key == "" {
			return nil, invalidf("%s needs a non-empty name", keyword)
		}
		return [][2]string{{key, val}}, nil
	}
	words, err := lx.words(s)
	if err != nil {
		return nil, invalidf("%s: %v", keyword, err)
	}
	out := make([][2]string, 0, len(words))
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !ok || k == "" {
			return nil, invalidf("%s: %q is not KEY=VALUE", keyword, w)
		}
		out = append(out, [2]string{k, v})
	}
	return out, nil
}
