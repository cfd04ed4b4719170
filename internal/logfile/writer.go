package logfile

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
	// Log receives what the Writer cannot return to a caller: a failed
	// rotation, after which it writes on to the live file. Nil discards.
	Log *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.MaxSize == 0 {
		o.MaxSize = DefaultMaxSize
	}
	if o.MaxFiles <= 0 {
		o.MaxFiles = DefaultMaxFiles
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o
}

// Writer appends records to a log file and rotates it. It is safe for
// concurrent use (stdout and stderr are copied by two goroutines).
type Writer struct {
	path string
	opts Options
	now  func() time.Time // the clock Copy stamps lines with

	mu     sync.Mutex
	f      *os.File // nil after Close, or when reopening after a failed rotation failed too
	closed bool
	size   int64
	// torn is set when the last record written was cut short: the next
	// one starts with the newline it lacks.
	torn bool
	// retryAt is, after a failed rotation, the size past which the next
	// attempt is made (zero otherwise), so that a lasting failure (a
	// read-only or full disk) costs an attempt and a log line per MaxSize
	// bytes written, not per line.
	retryAt int64
	buf     []byte
	// lineOpen is set, by streamIndex, while the last record stored of
	// that stream is a piece of a line (Partial): Close ends the line.
	lineOpen [2]bool
}

// Create opens the log file at path for appending, creating it and its
// directory as needed. A line the log's last writer left open (it was
// killed in the middle of a long line) is ended first with an empty
// record, so that readers do not join this writer's first line of that
// stream onto its pieces.
func Create(path string, opts Options) (*Writer, error) {
	w := &Writer{path: path, opts: opts.withDefaults(), now: time.Now}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create log directory: %w", err)
	}
	if err := w.open(); err != nil {
		return nil, err
	}
	w.endLinesLeftOpen()
	return w, nil
}

// endLinesLeftOpen writes an empty closing record for each stream whose
// last record in the log is a piece of a line. Failing to look or to write
// is logged, not returned: the container's output matters more than a
// line joined to the next.
func (w *Writer) endLinesLeftOpen() {
	open, err := linesLeftOpen(w.path)
	if err != nil {
		w.opts.Log.Warn("could not check the log for a line its last writer left open", "path", w.path, "err", err)
	}
	for i, s := range [2]string{Stdout, Stderr} {
		if !open[i] {
			continue
		}
		w.lineOpen[i] = true // so that the record is marked as the line's last piece
		if err := w.writeNow(Entry{Stream: s}); err != nil {
			w.opts.Log.Warn("could not end a line the log's last writer left open", "path", w.path, "stream", s, "err", err)
		}
	}
}

// linesLeftOpen reports, by streamIndex, whether the last record of that
// stream in the log at path is a piece of a line. It looks at the last
// records of the live file, then of the newest rotated one (the writer
// may have died between a rotation and its first write), and gives up
// on a stream not found among the last few hundred.
func linesLeftOpen(path string) (open [2]bool, err error) {
	var seen [2]bool
	looked := 0
	for _, name := range []string{path, rotatedName(path, 1)} {
		f, err := os.Open(name)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return open, fmt.Errorf("open log: %w", err)
		}
		st, err := f.Stat()
		if err == nil {
			_, _, err = scanBackward(f, st.Size(), func(line []byte) bool {
				looked++
				e, perr := ParseEntry(line)
				if perr == nil {
					if i := streamIndex(e.Stream); !seen[i] {
						seen[i], open[i] = true, e.Partial
					}
				}
				return looked < 256 && !(seen[0] && seen[1])
			})
		}
		f.Close()
		if err != nil {
			return open, fmt.Errorf("read log: %w", err)
		}
		if looked >= 256 || (seen[0] && seen[1]) {
			break
		}
	}
	return open, nil
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
	w.torn = w.torn && w.size > 0 // a new file has no line to end
	if w.size > 0 && !w.torn {
		// A record cut short by a writer that died (killed, a full
		// disk): the next one must not be glued onto it, or a reader
		// drops both.
		w.torn = !endsWithNewline(w.path, w.size)
	}
	return nil
}

// endsWithNewline reports whether the file at path, of size bytes, ends
// a line; true when it cannot be read (nothing is known to end).
func endsWithNewline(path string, size int64) bool {
	f, err := os.Open(path)
	if err != nil {
		return true
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], size-1); err != nil {
		return true
	}
	return b[0] == '\n'
}

// Write appends one record. Each record is a single write(2), so a reader
// never sees half of a short record.
func (w *Writer) Write(e Entry) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.write(e)
}

// writeNow appends e stamped with the current time. The clock is read
// under the lock, so that the records of concurrent copies (stdout and
// stderr) are in time order in the file: readers and followers select
// and resume by time.
func (w *Writer) writeNow(e Entry) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	e.Time = w.now()
	return w.write(e)
}

func (w *Writer) write(e Entry) error {
	if w.closed {
		return os.ErrClosed
	}
	if w.f == nil {
		// Reopening the live file after a failed rotation failed too.
		if err := w.open(); err != nil {
			return err
		}
	}
	e.cont = w.lineOpen[streamIndex(e.Stream)]
	w.buf = appendRecord(w.buf[:0], e)
	if w.opts.MaxSize > 0 && w.size > 0 && w.size+int64(len(w.buf)) > max(w.opts.MaxSize, w.retryAt) {
		w.retryAt = 0
		if err := w.rotate(); err != nil {
			w.retryAt = w.size + w.opts.MaxSize
			if w.f == nil {
				w.opts.Log.Error("log file rotation failed and the live file could not be reopened; lines are dropped until it can be", "path", w.path, "err", err)
				return fmt.Errorf("log file %s is not open after a failed rotation: %w", w.path, os.ErrClosed)
			}
			w.opts.Log.Error("log file rotation failed; writing on to the live file", "path", w.path, "err", err)
		}
	}
	if w.torn {
		// The last record was cut short: end its line first, so that
		// this one is read back (readers skip the broken one).
		w.buf = append(append(w.buf[:0:0], '\n'), w.buf...)
	}
	n, err := w.f.Write(w.buf)
	w.size += int64(n)
	if n > 0 {
		// A record cut short (a full disk) has no newline; the file is
		// not cut back, as a follower may have read past its end.
		w.torn = w.buf[n-1] != '\n'
	}
	if err != nil {
		return fmt.Errorf("write log record: %w", err)
	}
	w.lineOpen[streamIndex(e.Stream)] = e.Partial
	return nil
}

// rotate shifts path.N to path.N+1 from the oldest down, so that at every
// moment each file holds what its name says, then starts a new live file.
// When the shift fails it reopens the live file, so that writing goes on
// (past MaxSize) rather than stopping; w.f is nil only if that failed too.
func (w *Writer) rotate() error {
	err := w.f.Close()
	w.f = nil
	if err != nil {
		err = fmt.Errorf("close log file for rotation: %w", err)
	} else if err = w.shift(); err != nil {
		err = fmt.Errorf("rotate log file: %w", err)
	}
	if oerr := w.open(); oerr != nil {
		return errors.Join(err, oerr)
	}
	return err
}

// shift renames the closed live file and the rotated ones one number up,
// dropping the oldest.
func (w *Writer) shift() error {
	if w.opts.MaxFiles <= 1 {
		if err := os.Remove(w.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	last := rotatedName(w.path, w.opts.MaxFiles-1)
	if err := os.Remove(last); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for i := w.opts.MaxFiles - 2; i >= 1; i-- {
		if err := os.Rename(rotatedName(w.path, i), rotatedName(w.path, i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if err := os.Rename(w.path, rotatedName(w.path, 1)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Close ends the lines left open (a copy still in the middle of a long
// line, as when the driver gives up waiting for the streams to end) with
// an empty record, so that the next writer's first line of that stream is
// not joined to their pieces, then closes the live file. Writes after
// Close fail.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	var errs []error
	for i, s := range [2]string{Stdout, Stderr} {
		if w.lineOpen[i] {
			if err := w.write(Entry{Time: w.now(), Stream: s}); err != nil {
				errs = append(errs, fmt.Errorf("end the open %s line: %w", s, err))
			}
		}
	}
	w.closed = true
	if w.f != nil {
		errs = append(errs, w.f.Close())
		w.f = nil
	}
	return errors.Join(errs...)
}

func rotatedName(path string, n int) string { return path + "." + strconv.Itoa(n) }

// Copy reads r until EOF and writes one record per line of it, tagged with
// stream and the time the line was written (so that the records of
// concurrent copies are in time order). Lines longer than MaxLineSize are
// cut at a rune boundary into partial records. A line cut short by EOF is
// written as a complete line. It returns the first read error other than
// EOF; write errors are counted in dropped and the data discarded, because
// a stalled copy would block the container on a full pipe.
func (w *Writer) Copy(stream string, r io.Reader) (dropped int, err error) {
	br := bufio.NewReaderSize(r, MaxLineSize)
	var pending []byte // a line longer than the buffer, being assembled
	emit := func(line []byte, partial bool) {
		if w.writeNow(Entry{Stream: stream, Line: string(line), Partial: partial}) != nil {
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
