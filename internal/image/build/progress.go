package build

import (
	"fmt"
	"io"
	"strings"
	"sync"
)

// progress prints a step's line.
func (b *builder) progress(in Instruction, note string) {
	b.step++
	text := in.String()
	text = shorten(text, 200)
	if note != "" {
		note = "  " + note
	}
	fmt.Fprintf(b.out, "[%d/%d] %s%s\n", b.step, b.total, text, note)
}

// syncWriter serializes writes: RUN output arrives on two streams.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// indentWriter indents the lines of a RUN command's output under its
// step line.
type indentWriter struct {
	mu      sync.Mutex
	w       io.Writer
	partial []byte
}

func (w *indentWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := strings.IndexByte(string(p), '\n')
		if i < 0 {
			w.partial = append(w.partial, p...)
			if len(w.partial) > 64<<10 {
				w.emit()
			}
			break
		}
		w.partial = append(w.partial, p[:i]...)
		w.emit()
		p = p[i+1:]
	}
	return n, nil
}

func (w *indentWriter) emit() {
	_, _ = w.w.Write(append(append([]byte("    "), w.partial...), '\n'))
	w.partial = w.partial[:0]
}

// flush writes an unfinished last line.
func (w *indentWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.partial) > 0 {
		w.emit()
	}
}
