package main

import (
	"testing"
	"time"
)

func TestParseLogfmt(t *testing.T) {
	tests := []struct {
		name string
		line string
		want map[string]string
	}{
		{
			name: "plain and quoted values are both read",
			line: `time=2025-01-01T00:00:00.000Z level=DEBUG msg="instance attached" node=n1 instance=default_web-1 ip=10.1.0.5 took=12.5ms`,
			want: map[string]string{"level": "DEBUG", "msg": "instance attached", "instance": "default_web-1", "took": "12.5ms"},
		},
		{
			name: "escaped quotes inside a value are unescaped",
			line: `msg="say \"hi\"" took=1s`,
			want: map[string]string{"msg": `say "hi"`, "took": "1s"},
		},
		{
			name: "an unterminated quote drops the tail only",
			line: `a=1 msg="oops`,
			want: map[string]string{"a": "1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseLogfmt(tt.line)
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q (all: %v)", k, got[k], v, got)
				}
			}
			if _, ok := got["msg"]; ok && tt.want["msg"] == "" {
				t.Errorf("msg parsed from a malformed value: %q", got["msg"])
			}
		})
	}
}

func TestParseStatCPU(t *testing.T) {
	tests := []struct {
		name           string
		stat           string
		self, children time.Duration
	}{
		{
			name: "utime and stime are summed in clock ticks, cutime and cstime apart",
			stat: "1234 (gantry) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 30 20 20 0 12 0 100 0 0",
			self: 3 * time.Second, children: 500 * time.Millisecond,
		},
		{
			name: "a command name with spaces and parentheses does not shift fields",
			stat: "99 (a (b) c) R 1 99 99 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 1 0 0",
			self: 100 * time.Millisecond,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			self, children, err := parseStatCPU(tt.stat)
			if err != nil {
				t.Fatal(err)
			}
			if self != tt.self || children != tt.children {
				t.Errorf("got %s and %s, want %s and %s", self, children, tt.self, tt.children)
			}
		})
	}
	if _, _, err := parseStatCPU("garbage"); err == nil {
		t.Error("a line without fields parsed")
	}
}

func TestSummarizeUsesNearestRank(t *testing.T) {
	var ds []time.Duration
	for i := 50; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	d := summarize(ds)
	if d.p50 != 25*time.Millisecond || d.p90 != 45*time.Millisecond || d.p99 != 50*time.Millisecond || d.max != 50*time.Millisecond {
		t.Errorf("got p50 %s p90 %s p99 %s max %s; want 25ms 45ms 50ms 50ms", d.p50, d.p90, d.p99, d.max)
	}
	if (summarize(nil) != dist{}) {
		t.Error("an empty sample is not zero")
	}
}
