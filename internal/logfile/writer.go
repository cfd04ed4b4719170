package logfile

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// MaxLineSize is the longest piece of a line stored in one record. Longer
// lines are cut into records of at most this many bytes of text, so a
// program that never prints a newline cannot make the driver buffer
// without bound.
const MaxLineSize = 16 << 10

// Defaults for Options fields left zero.
const (
	DefaultMaxSize  = 10 << 20
	DefaultMaxFiles = 3
)

// Options says when a log file rotates and how many files are kept.
type Options struct {
	// MaxSize is the size in bytes past which the file is rotated;
	// DefaultMaxSize when zero, never when negative.
	MaxSize int64
	// MaxFiles counts the live file and the rotated ones (path, path.1 …);
	// DefaultMaxFiles when zero. One means the file is cut to zero on
	// rotation and no history is kept.
	MaxFiles int
}

func (o Options) withDefaults() Options {
	if o.MaxSize == 0 {
		o.MaxSize = DefaultMaxSize
	}
	if o.MaxFiles <= 0 {
		o.MaxFiles = DefaultMaxFiles
	}
	return o
}

// Writer appends records to a log file and rotates it. It is safe for
// concurrent use (stdout and stderr are copied by two goroutines).
type Writer struct {
	path string
	opts Options

	mu   sync.Mutex
	f    *os.File
	size int64
	buf  []byte
}

// Create opens the log file at path for appending, creating it and its
// directory as needed.
func Create(path string, opts Options) (*Writer, error) {
	w := &Writer{path: path, opts: opts.withDefaults()}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create log directory: %w", err)
	}
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *Writer) open() error {
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("open log file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("stat log file: %w", err)
	}
	w.f, w.size = f, st.Size()
	return nil
}

// Write appends one record. Each record is a single write(2), so a reader
// never sees half of a short record.
func (w *Writer) Write(e Entry) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return os.ErrClosed
	}
	w.buf = appendRecord(w.buf[:0], e)
	if w.opts.MaxSize > 0 && w.size > 0 && w.size+int64(len(w.buf)) > w.opts.MaxSize {
		if err := w.rotate(); err != nil {
			return err
		}
	}
	n, err := w.f.Write(w.buf)
	w.size += int64(n)
	if err != nil {
		return fmt.Errorf("write log record: %w", err)
	}
	return nil
}

// rotate shifts path.N to path.N+1 from the oldest down, so that at every
// moment each file holds what its name says, then starts a new live file.
func (w *Writer) rotate() error {
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("close log file for rotation: %w", err)
	}
	w.f = nil
	if w.opts.MaxFiles <= 1 {
		if err := os.Remove(w.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rotate log file: %w", err)
		}
		return w.open()
	}
	last := rotatedName(w.path, w.opts.MaxFiles-1)
	if err := os.Remove(last); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("rotate log file: %w", err)
	}
	for i := w.opts.MaxFiles - 2; i >= 1; i-- {
		if err := os.Rename(rotatedName(w.path, i), rotatedName(w.path, i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rotate log file: %w", err)
		}
	}
	if err := os.Rename(w.path, rotatedName(w.path, 1)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("rotate log file: %w", err)
	}
	return w.open()
}

// Close closes the live file.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

func rotatedName(path string, n int) string { return path + "." + strconv.Itoa(n) }

// Copy reads r until EOF and writes one record per line of it, tagged with
// stream and the time the line was read. Lines longer than MaxLineSize are
// cut at a rune boundary into partial records. A line cut short by EOF is
// written as a complete line. It returns the first read error other than
// EOF; write errors are counted in dropped and the data discarded, because
// a stalled copy would block the container on a full pipe.
func (w *Writer) Copy(stream string, r io.Reader) (dropped int, err error) {
	br := bufio.NewReaderSize(r, MaxLineSize)
	var pending []byte // a line longer than the buffer, being assembled
	emit := func(line []byte, partial bool) {
		if w.Write(Entry{Time: time.Now(), Stream: stream, Line: string(line), Partial: partial}) != nil {
			dropped++
		}
	}
	for {
		chunk, rerr := br.ReadSlice('\n')
		pending = append(pending, chunk...)
		complete := len(pending) > 0 && pending[len(pending)-1] == '\n'
		if complete {
			pending = pending[:len(pending)-1]
		}
		for len(pending) > MaxLineSize {
			cut := cutPoint(pending, MaxLineSize)
			emit(pending[:cut], true)
			pending = pending[cut:]
		}
		switch {
		case complete:
			emit(pending, false)
			pending = pending[:0]
		case rerr == io.EOF || (rerr != nil && !errors.Is(rerr, bufio.ErrBufferFull)):
			if len(pending) > 0 {
				emit(pending, false)
			}
			if rerr == io.EOF {
				return dropped, nil
			}
			return dropped, rerr
		}
	}
}

// cutPoint returns the largest n <= max such that b[:n] does not end in
// the middle of a UTF-8 sequence (or max itself when b is not UTF-8 there).
func cutPoint(b []byte, max int) int {
	for n := max; n > max-utf8.UTFMax && n > 0; n-- {
		if utf8.RuneStart(b[n]) {
			return n
		}
	}
	return max
}
