package logfile

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// Whatever bytes a container prints are stored as valid JSON and read back
// as valid UTF-8: the same text when it was valid, with invalid bytes
// replaced otherwise.
func TestRecordsOfArbitraryBytesAreValidJSONAndReadBack(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"\x00", "\x1f", "\x7f", "\"", "\\", "\n", "\r", "\t", "<", ">", "&", "\u2028", "\u2029",
		"\xed\xa0\x80", "\xff", "\xc3", "\xe2\x82", "é", "😀", "a", "\xf4\x90\x80\x80"}
	for range 20000 {
		var b strings.Builder
		for range rng.IntN(12) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		s := b.String()
		rec := appendRecord(nil, Entry{Time: time.Unix(1, 0), Stream: Stdout, Line: s})
		if !json.Valid(rec[:len(rec)-1]) {
			t.Fatalf("%q: invalid JSON %q", s, rec)
		}
		e, err := ParseEntry(rec)
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		if !utf8.ValidString(e.Line) || (utf8.ValidString(s) && e.Line != s) {
			t.Fatalf("%q read back as %q", s, e.Line)
		}
	}
}
