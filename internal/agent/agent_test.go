package agent

import (
	"slices"
	"testing"
)

func TestContainerID(t *testing.T) {
	tests := []struct {
		name string
		key  string
		want string
	}{
		{"a namespaced key swaps its slash for an underscore", "default/web-1", "default_web-1"},
		{"a key without a namespace is kept", "web-1", "web-1"},
		{"every slash is swapped", "a/b/c", "a_b_c"},
		{"an empty key stays empty", "", ""},
		{"multi-byte names are kept intact", "ns/café", "ns_café"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := containerID(tt.key); got != tt.want {
				t.Errorf("containerID(%q) = %q, want %q", tt.key, got, tt.want)
			}
		})
	}
}

func TestSplitLines(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"an empty string is one empty line", "", []string{""}},
		{"text without a newline is one line", "MemTotal: 1 kB", []string{"MemTotal: 1 kB"}},
		{"lines split at newlines", "a\nb\nc", []string{"a", "b", "c"}},
		{"a trailing newline leaves an empty last line", "a\nb\n", []string{"a", "b", ""}},
		{"empty lines are kept", "a\n\nb", []string{"a", "", "b"}},
		{"a lone newline is two empty lines", "\n", []string{"", ""}},
		{"a carriage return stays in its line", "a\r\nb", []string{"a\r", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := splitLines(tt.in); !slices.Equal(got, tt.want) {
				t.Errorf("splitLines(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
