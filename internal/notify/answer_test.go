package notify

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestErrorAnswersAreCutAtARuneBoundary(t *testing.T) {
	a := strings.Repeat("a", 200)
	tests := []struct {
		name string
		body string // as the server sent it; answer gets what attempt reads
		want string
	}{
		{"an empty body says nothing", "", ""},
		{"a short body is kept, whitespace collapsed", " Bad \n  Request ", ": Bad Request"},
		{"a body of exactly the limit is kept", a, ": " + a},
		{"a 2-byte rune across the cut is left out", a[:199] + "é" + "zz", ": " + a[:199] + "…"},
		{"a 4-byte rune across the cut is left out", a[:198] + "😀" + "zz", ": " + a[:198] + "…"},
		{"a rune just before the cut is kept", a[:198] + "é" + "zz", ": " + a[:198] + "é…"},
		{"a rune across the read limit is left out", strings.Repeat(" ", 511) + "€ more", ""},
		{"a rune ending at the read limit is kept", strings.Repeat(" ", 510) + "é€ more", ": é"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := []byte(tt.body)
			if len(b) > maxErrorBody+1 {
				b = b[:maxErrorBody+1]
			}
			got := answer(b)
			if got != tt.want {
				t.Errorf("answer = %q, want %q", got, tt.want)
			}
			if !utf8.ValidString(got) {
				t.Errorf("answer %q is not valid UTF-8", got)
			}
		})
	}
}

func TestCutNeverSplitsARune(t *testing.T) {
	tests := []struct {
		s    string
		n    int
		want string
	}{
		{"héllo", 10, "héllo"},
		{"héllo", 2, "h"},
		{"héllo", 3, "hé"},
		{"日本", 5, "日"},
		{"日本", 3, "日"},
		{"日本", 2, ""},
		{"\x80\x80\x80\x80\x80", 2, "\x80\x80"}, // not UTF-8: cut where asked
	}
	for _, tt := range tests {
		if got := cut(tt.s, tt.n); got != tt.want {
			t.Errorf("cut(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
		}
	}
}
