package stream

import (
	"bytes"
	"testing"
)

func TestFramesRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	c := New(&buf)
	frames := []struct {
		t byte
		p []byte
	}{{Stdout, []byte("hello")}, {Stderr, nil}, {Resize, ResizePayload(80, 24)}, {Exit, ExitPayload(-3)}}
	for _, f := range frames {
		if err := c.Write(f.t, f.p); err != nil {
			t.Fatal(err)
		}
	}
	for i, f := range frames {
		typ, p, err := c.Read()
		if err != nil || typ != f.t || !bytes.Equal(p, f.p) && len(f.p) > 0 {
			t.Fatalf("frame %d: %d %q %v", i, typ, p, err)
		}
	}
	if w, h, ok := ParseResize(ResizePayload(80, 24)); !ok || w != 80 || h != 24 {
		t.Fatal("resize round trip")
	}
	if ParseExit(ExitPayload(-3)) != -3 {
		t.Fatal("exit round trip")
	}
}

func FuzzRead(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 2, 'h', 'i'})
	f.Add([]byte{5, 0, 0, 0, 4, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		c := &Conn{r: bytes.NewReader(b), w: &bytes.Buffer{}}
		for {
			_, p, err := c.Read()
			if err != nil {
				return
			}
			if len(p) > MaxFrame {
				t.Fatal("oversized frame accepted")
			}
		}
	})
}
