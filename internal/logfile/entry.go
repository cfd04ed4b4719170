package logfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Stream names as they appear in records.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// Entry is one record of a log file.
type Entry struct {
	Time   time.Time
	Stream string // Stdout or Stderr
	Line   string // without the trailing newline
	// Partial is set on every piece of a cut long line except the last.
	Partial bool
	// cont is set on every piece of a cut long line except the first, so
	// that a reader starting inside the log knows a piece whose line began
	// before it. The Writer sets it; logs of older writers lack it.
	cont bool
}

// record is the JSON shape of an Entry on disk. The field names are short
// because they repeat on every line.
type record struct {
	T   string `json:"t"`
	S   string `json:"s"`
	Log string `json:"log"`
	P   bool   `json:"p,omitempty"`
	C   bool   `json:"c,omitempty"`
}

// appendRecord appends e as one JSON line, newline included. It writes the
// JSON by hand: encoding/json would escape <, > and & and allocate more,
// and this runs for every line every container prints.
func appendRecord(b []byte, e Entry) []byte {
	b = append(b, `{"t":"`...)
	b = e.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","s":`...)
	b = appendString(b, e.Stream)
	b = append(b, `,"log":`...)
	b = appendString(b, e.Line)
	if e.Partial {
		b = append(b, `,"p":true`...)
	}
	if e.cont {
		b = append(b, `,"c":true`...)
	}
	return append(b, "}\n"...)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD,
// so every record is valid JSON whatever a container prints.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			// Valid JSON, but some JavaScript consumers (the console) choke
			// on these raw.
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// ErrBadRecord is returned by ParseEntry for a line that is not a record.
var ErrBadRecord = errors.New("not a log record")

// ParseEntry parses one line of a log file (with or without its newline).
func ParseEntry(line []byte) (Entry, error) {
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
	}
	var r record
	if err := json.Unmarshal(line, &r); err != nil {
		return Entry{}, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	t, err := time.Parse(time.RFC3339Nano, r.T)
	if err != nil {
		return Entry{}, fmt.Errorf("%w: time: %v", ErrBadRecord, err)
	}
	// Records store UTC, and RFC 3339 has four-digit years: a time whose
	// offset pushes it out of years 0-9999 in UTC could not be written back.
	if y := t.UTC().Year(); y < 0 || y > 9999 {
		return Entry{}, fmt.Errorf("%w: time %q is outside years 0000-9999 in UTC", ErrBadRecord, r.T)
	}
	if r.S != Stdout && r.S != Stderr {
		return Entry{}, fmt.Errorf("%w: unknown stream %q", ErrBadRecord, r.S)
	}
	return Entry{Time: t, Stream: r.S, Line: r.Log, Partial: r.P, cont: r.C}, nil
}
