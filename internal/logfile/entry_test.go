package logfile

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestRecordRoundTrip(t *testing.T) {
	at := time.Date(2025, 3, 4, 5, 6, 7, 891011121, time.UTC)
	tests := []struct {
		name string
		in   Entry
		want string // Line after the round trip, when it differs
	}{
		{name: "a plain line survives", in: Entry{Time: at, Stream: Stdout, Line: "hello world"}},
		{name: "an empty line survives", in: Entry{Time: at, Stream: Stderr, Line: ""}},
		{name: "quotes and backslashes are escaped", in: Entry{Time: at, Stream: Stdout, Line: `say "hi" \ bye`}},
		{name: "control characters are escaped", in: Entry{Time: at, Stream: Stdout, Line: "a\tb\rc\x00d\x1be\x7f"}},
		{name: "html characters stay readable", in: Entry{Time: at, Stream: Stdout, Line: "<a href=x>&</a>"}},
		{name: "multi-byte text survives", in: Entry{Time: at, Stream: Stdout, Line: "héllo 世界 🚀"}},
		{name: "line separators are escaped", in: Entry{Time: at, Stream: Stdout, Line: "a\u2028b\u2029c"}},
		{name: "invalid UTF-8 becomes the replacement character", in: Entry{Time: at, Stream: Stdout, Line: "a\xffb\xc3"}, want: "a\ufffdb\ufffd"},
		{name: "a partial flag survives", in: Entry{Time: at, Stream: Stdout, Line: "part", Partial: true}},
		{name: "a local time comes back as the same instant", in: Entry{Time: at.In(time.FixedZone("X", 3600)), Stream: Stdout, Line: "tz"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := appendRecord(nil, tt.in)
			if !strings.HasSuffix(string(b), "}\n") || strings.Count(string(b), "\n") != 1 {
				t.Fatalf("record is not one line: %q", b)
			}
			if !json.Valid(b) {
				t.Fatalf("record is not valid JSON: %q", b)
			}
			got, err := ParseEntry(b)
			if err != nil {
				t.Fatalf("ParseEntry(%q): %v", b, err)
			}
			want := tt.in
			if tt.want != "" {
				want.Line = tt.want
			}
			if !got.Time.Equal(want.Time) || got.Stream != want.Stream || got.Line != want.Line || got.Partial != want.Partial {
				t.Fatalf("round trip of %+v gave %+v", want, got)
			}
		})
	}
}

func TestParseEntryRejectsWhatIsNotARecord(t *testing.T) {
	for _, line := range []string{
		``,
		`not json`,
		`{"t":"yesterday","s":"stdout","log":"x"}`,
		`{"t":"2025-01-01T00:00:00Z","s":"stdin","log":"x"}`,
		`{"t":"2025-01-01T00:00:00Z","log":"x"}`,
		`["t","s"]`,
		`{"t":"0000-01-01T00:00:00+01:00","s":"stdout","log":""}`,
		`{"t":"9999-12-31T23:00:00-02:00","s":"stdout","log":""}`,
	} {
		if _, err := ParseEntry([]byte(line)); !errors.Is(err, ErrBadRecord) {
			t.Errorf("ParseEntry(%q) = %v, want ErrBadRecord", line, err)
		}
	}
}

// FuzzParseEntry checks that the parser never panics, and that whatever it
// accepts the writer encodes back into a record that parses the same.
func FuzzParseEntry(f *testing.F) {
	f.Add([]byte(`{"t":"2025-01-01T00:00:00.5Z","s":"stdout","log":"x"}`))
	f.Add([]byte(`{"t":"2025-01-01T00:00:00Z","s":"stderr","log":"\u2028\"","p":true}` + "\n"))
	f.Add([]byte(`{"t":"2025-01-01T00:00:00+01:00","s":"stdout","log":"\ud800"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		e, err := ParseEntry(line)
		if err != nil {
			return
		}
		again, err := ParseEntry(appendRecord(nil, e))
		if err != nil {
			t.Fatalf("re-encoded %+v does not parse: %v", e, err)
		}
		if !again.Time.Equal(e.Time) || again.Stream != e.Stream || again.Partial != e.Partial {
			t.Fatalf("re-encoded %+v parsed as %+v", e, again)
		}
		if utf8.ValidString(e.Line) && again.Line != e.Line {
			t.Fatalf("line %q came back as %q", e.Line, again.Line)
		}
	})
}

// FuzzRecordRoundTrip checks that any text a container prints is stored
// in one valid JSON line and read back unchanged (up to invalid UTF-8).
func FuzzRecordRoundTrip(f *testing.F) {
	f.Add("hello", false)
	f.Add("\x00\"\\\n\u2028\xff", true)
	f.Fuzz(func(t *testing.T, line string, partial bool) {
		in := Entry{Time: time.Unix(1700000000, 123).UTC(), Stream: Stderr, Line: line, Partial: partial}
		b := appendRecord(nil, in)
		if !json.Valid(b) || strings.Count(string(b), "\n") != 1 {
			t.Fatalf("bad record %q", b)
		}
		got, err := ParseEntry(b)
		if err != nil {
			t.Fatalf("ParseEntry(%q): %v", b, err)
		}
		if want := strings.ToValidUTF8(line, "\ufffd"); utf8.ValidString(line) && got.Line != want {
			t.Fatalf("line %q came back as %q", line, got.Line)
		}
		if got.Partial != partial || !got.Time.Equal(in.Time) {
			t.Fatalf("got %+v, want %+v", got, in)
		}
	})
}
