package image

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestBar(t *testing.T) {
	clock := time.Unix(1000, 0)
	newBar := func(terminal bool) (*Bar, *bytes.Buffer) {
		var buf bytes.Buffer
		b := NewBar(&buf, "pushing team/app:v1")
		b.terminal = terminal
		b.now = func() time.Time { return clock }
		b.start = clock
		return b, &buf
	}
	t.Run("on a terminal it redraws in place and ends the line", func(t *testing.T) {
		b, buf := newBar(true)
		b.Update(0, 20_000_000)
		clock = clock.Add(time.Second)
		b.Update(10_000_000, 20_000_000)
		clock = clock.Add(time.Second)
		b.Update(20_000_000, 20_000_000)
		b.Finish()
		out := buf.String()
		if strings.Count(out, "\r") != 4 || !strings.HasSuffix(out, "\n") {
			t.Errorf("output %q", out)
		}
		last := out[strings.LastIndex(out, "\r")+1:]
		for _, want := range []string{"pushing team/app:v1", "[==============================]", "100%", "20.0 MB/20.0 MB", "10.0 MB/s"} {
			if !strings.Contains(last, want) {
				t.Errorf("final line %q lacks %q", last, want)
			}
		}
	})
	t.Run("redraws are limited", func(t *testing.T) {
		b, buf := newBar(true)
		for i := range 100 {
			b.Update(int64(i), 1000)
		}
		if n := strings.Count(buf.String(), "\r"); n != 1 {
			t.Errorf("%d redraws within one instant", n)
		}
	})
	t.Run("elsewhere it prints one summary line", func(t *testing.T) {
		b, buf := newBar(false)
		b.Update(500, 1000)
		b.Update(1000, 1000)
		b.Finish()
		if out := buf.String(); strings.Count(out, "\n") != 1 || strings.Contains(out, "\r") || !strings.Contains(out, "100%") {
			t.Errorf("output %q", out)
		}
	})
	t.Run("an unknown total shows bytes only", func(t *testing.T) {
		b, buf := newBar(false)
		b.Update(1500, 0)
		b.Finish()
		if out := buf.String(); !strings.Contains(out, "1.5 kB") || strings.Contains(out, "%") {
			t.Errorf("output %q", out)
		}
	})
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 999: "999 B", 1000: "1.0 kB", 1500: "1.5 kB", 12_000_000: "12.0 MB", 3_000_000_000_000: "3.0 TB"} {
		if got := HumanBytes(n); got != want {
			t.Errorf("HumanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
