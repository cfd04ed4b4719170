package logfile

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ReadOptions selects what a Reader returns.
type ReadOptions struct {
	// Since drops records older than this time (zero: keep all).
	Since time.Time
	// Tail returns only the last Tail lines that pass Since (whole: all
	// their pieces), and the pieces so far of a line still being
	// written; zero or negative returns all. To follow new records only,
	// set Since to now.
	Tail int
	// Follow keeps the reader waiting for new records, across rotations,
	// until its context ends.
	Follow bool
	// PollInterval is how often a following reader checks for new data;
	// 100ms when zero.
	PollInterval time.Duration
}

// maxRecordSize bounds the bytes a reader keeps for one line, so that a
// damaged file cannot make it buffer without bound. Records the writer
// makes are far smaller (MaxLineSize of text, escaped).
const maxRecordSize = 1 << 20

// Reader returns the records of one container's log, oldest first.
// A Reader is not safe for concurrent use.
type Reader struct {
	path string
	opts ReadOptions

	pending []Entry    // records found by the tail scan, not yet returned
	queue   []*os.File // files to read forward after cur, oldest first
	cur     *os.File
	br      *bufio.Reader
	partial []byte // bytes of a record whose newline has not arrived yet
	skip    bool   // discarding an oversized record up to its newline
	ticker  *time.Ticker
	// held are the pieces of a long line read so far, by stream (the
	// pieces of a stdout line may have stderr records between them).
	held [2]*Entry
}

// MaxJoinedLine bounds the text of a long line that Next joins from its
// pieces; a longer one comes out in several entries of about this size,
// all but the last marked Partial. Encoded as JSON (at most six bytes a
// character) it stays within the 4 MiB line the API server and the CLI
// accept.
const MaxJoinedLine = 512 << 10

// Open opens the log at path (with its rotated files) for reading. A log
// that does not exist yet reads as empty, and a following Reader waits for
// it to appear.
func Open(path string, opts ReadOptions) (*Reader, error) {
	if opts.PollInterval <= 0 {
		opts.PollInterval = 100 * time.Millisecond
	}
	r := &Reader{path: path, opts: opts}
	// Open every file before reading any, so that a rotation while we
	// read does not shift names under us: an open file keeps its content.
	snap, err := openSnapshot(path)
	if err != nil {
		return nil, err
	}
	var files []*os.File
	var live *os.File
	for _, o := range snap {
		if o.live {
			live = o.f
		} else {
			files = append(files, o.f)
		}
	}

	all := files
	if live != nil {
		all = append(slices.Clone(files), live)
	}
	if opts.Tail > 0 && len(all) > 0 {
		// Reading forward resumes after the tail, in the newest file
		// (normally the live one; a rotated one if we opened in the
		// middle of a rotation).
		newest := all[len(all)-1]
		entries, end, err := tailFiles(all, newest, opts.Tail, opts.Since)
		closeAll(all[:len(all)-1])
		if err == nil {
			_, err = newest.Seek(end, io.SeekStart)
		}
		if err != nil {
			newest.Close()
			return nil, fmt.Errorf("tail log: %w", err)
		}
		r.pending = entries
		all = all[len(all)-1:]
	}
	r.queue = all
	r.advance()
	return r, nil
}

// Close releases the files the Reader holds.
func (r *Reader) Close() error {
	if r.cur != nil {
		r.cur.Close()
		r.cur = nil
	}
	closeAll(r.queue)
	r.queue = nil
	if r.ticker != nil {
		r.ticker.Stop()
	}
	return nil
}

// Next returns the next line. A line the writer cut into pieces
// (MaxLineSize) comes out whole, up to MaxJoinedLine, with the time of
// its first piece. Without Follow it returns io.EOF after the last one;
// with Follow it waits for more and returns ctx's error when ctx ends
// (pieces read so far are kept for the next call).
func (r *Reader) Next(ctx context.Context) (Entry, error) {
	for {
		e, err := r.nextRecord(ctx)
		if errors.Is(err, io.EOF) {
			// A line whose last piece never came (its writer died).
			if h := r.takeHeld(); h != nil {
				return *h, nil
			}
		}
		if err != nil {
			return Entry{}, err
		}
		i := streamIndex(e.Stream)
		if h := r.held[i]; h != nil {
			h.Line += e.Line
			h.Partial = e.Partial
			e, r.held[i] = *h, nil
		}
		if e.Partial && len(e.Line) < MaxJoinedLine {
			r.held[i] = &e
			continue
		}
		return e, nil
	}
}

func streamIndex(s string) int {
	if s == Stderr {
		return 1
	}
	return 0
}

// takeHeld returns the oldest held piece, if any, and forgets it.
func (r *Reader) takeHeld() *Entry {
	i := 0
	if r.held[0] == nil || (r.held[1] != nil && r.held[1].Time.Before(r.held[0].Time)) {
		i = 1
	}
	h := r.held[i]
	r.held[i] = nil
	return h
}

// nextRecord returns the next record as it is stored.
func (r *Reader) nextRecord(ctx context.Context) (Entry, error) {
	if len(r.pending) > 0 {
		e := r.pending[0]
		r.pending = r.pending[1:]
		return e, nil
	}
	for {
		if err := ctx.Err(); err != nil {
			return Entry{}, err
		}
		if r.cur != nil {
			e, ok, err := r.readRecord()
			if err != nil {
				return Entry{}, err
			}
			if ok {
				if !r.opts.Since.IsZero() && e.Time.Before(r.opts.Since) {
					continue
				}
				return e, nil
			}
			// cur is at its end for now.
			if len(r.queue) > 0 {
				r.advance()
				continue
			}
		}
		if !r.opts.Follow {
			return Entry{}, io.EOF
		}
		moved, err := r.checkRotation()
		if err != nil {
			return Entry{}, err
		}
		if moved {
			continue
		}
		if err := r.wait(ctx); err != nil {
			return Entry{}, err
		}
	}
}

// advance makes the next queued file current.
func (r *Reader) advance() {
	if r.cur != nil {
		r.cur.Close()
		r.cur = nil
	}
	r.partial, r.skip = r.partial[:0], false
	if len(r.queue) == 0 {
		return
	}
	r.cur, r.queue = r.queue[0], r.queue[1:]
	if r.br == nil {
		r.br = bufio.NewReaderSize(r.cur, 64<<10)
	} else {
		r.br.Reset(r.cur)
	}
}

// readRecord reads one complete line from cur. ok is false at the end of
// the data written so far; an incomplete last line stays buffered until
// its newline arrives. Lines that do not parse are skipped.
func (r *Reader) readRecord() (Entry, bool, error) {
	for {
		chunk, err := r.br.ReadSlice('\n')
		switch {
		case r.skip:
		case len(r.partial)+len(chunk) > maxRecordSize:
			r.partial, r.skip = r.partial[:0], true
		default:
			r.partial = append(r.partial, chunk...)
		}
		if err == nil { // a full line
			line := r.partial
			skipped := r.skip
			r.partial, r.skip = r.partial[:0], false
			if skipped {
				continue
			}
			e, perr := ParseEntry(line)
			if perr != nil {
				continue
			}
			return e, true, nil
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err == io.EOF {
			return Entry{}, false, nil
		}
		return Entry{}, false, fmt.Errorf("read log: %w", err)
	}
}

// checkRotation looks whether the live file we follow was rotated or cut.
// After a rotation it queues, oldest first, every file written after ours
// (several rotations may have happened since we last looked) and reports
// moved. A live file cut shorter than our offset is read again from the
// start.
func (r *Reader) checkRotation() (moved bool, err error) {
	snap, err := openSnapshot(r.path)
	if err != nil {
		return false, err
	}
	var curInfo os.FileInfo
	if r.cur != nil {
		if curInfo, err = r.cur.Stat(); err != nil {
			closeSnapshot(snap)
			return false, fmt.Errorf("stat log: %w", err)
		}
	}
	// Files up to and including ours are read; when ours is not in the
	// snapshot it was deleted as the oldest, so every file there is newer.
	idx := -1
	for i, o := range snap {
		if curInfo != nil && os.SameFile(curInfo, o.info) {
			idx = i
		}
	}
	if idx >= 0 && snap[idx].live {
		closeSnapshot(snap)
		off, err := r.cur.Seek(0, io.SeekCurrent)
		if err != nil {
			return false, fmt.Errorf("seek log: %w", err)
		}
		if snap[idx].info.Size() >= off {
			return false, nil
		}
		if _, err := r.cur.Seek(0, io.SeekStart); err != nil {
			return false, fmt.Errorf("seek log: %w", err)
		}
		r.br.Reset(r.cur)
		r.partial, r.skip = r.partial[:0], false
		return true, nil
	}
	closeSnapshot(snap[:idx+1])
	for _, o := range snap[idx+1:] {
		r.queue = append(r.queue, o.f)
	}
	if r.cur == nil && len(r.queue) > 0 {
		r.advance()
	}
	// Whatever was appended to ours before its rename is still readable
	// through our descriptor; Next drains it before moving to the queue.
	return len(snap) > idx+1, nil
}

// opened is one file of a snapshot of a log.
type opened struct {
	name string
	f    *os.File
	info os.FileInfo
	live bool
}

// openSnapshot opens the rotated files and the live file of a log, oldest
// first, such that no rotation happened between listing and opening them:
// names are listed, opened, and listed again, and the attempt is retried
// when a name no longer points at the file that was opened.
func openSnapshot(path string) ([]opened, error) {
	var lastErr error
	for range 20 {
		snap, stable, err := tryOpenSnapshot(path)
		if err != nil {
			return nil, err
		}
		if stable {
			return snap, nil
		}
		closeSnapshot(snap)
		lastErr = errors.New("log rotates too fast to open a consistent set of files")
	}
	return nil, lastErr
}

func tryOpenSnapshot(path string) (snap []opened, stable bool, err error) {
	rotated, err := rotatedFiles(path)
	if err != nil {
		return nil, false, err
	}
	names := append(rotated, path)
	for i, name := range names {
		f, err := os.Open(name)
		if errors.Is(err, os.ErrNotExist) {
			if i < len(names)-1 {
				return snap, false, nil // renamed since listed
			}
			continue // no live file (yet, or mid-rotation)
		}
		if err != nil {
			closeSnapshot(snap)
			return nil, false, fmt.Errorf("open log: %w", err)
		}
		info, err := f.Stat()
		if err != nil {
			f.Close()
			closeSnapshot(snap)
			return nil, false, fmt.Errorf("stat log: %w", err)
		}
		snap = append(snap, opened{name: name, f: f, info: info, live: i == len(names)-1})
	}
	again, err := rotatedFiles(path)
	if err != nil {
		closeSnapshot(snap)
		return nil, false, err
	}
	if !slices.Equal(again, rotated) {
		return snap, false, nil
	}
	for _, o := range snap {
		info, err := os.Stat(o.name)
		if err != nil || !os.SameFile(info, o.info) {
			return snap, false, nil
		}
	}
	return snap, true, nil
}

func closeSnapshot(snap []opened) {
	for _, o := range snap {
		o.f.Close()
	}
}

func (r *Reader) wait(ctx context.Context) error {
	if r.ticker == nil {
		r.ticker = time.NewTicker(r.opts.PollInterval)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-r.ticker.C:
		return nil
	}
}

// rotatedFiles lists path.N files that exist, oldest (highest N) first.
// It lists the directory rather than probing path.1, path.2 … because a
// rotation in progress leaves a gap in the numbers for a moment.
func rotatedFiles(path string) ([]string, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list logs: %w", err)
	}
	type numbered struct {
		n    int
		name string
	}
	var found []numbered
	for _, e := range ents {
		suffix, ok := strings.CutPrefix(e.Name(), base+".")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(suffix)
		if err != nil || n < 1 || strconv.Itoa(n) != suffix {
			continue
		}
		found = append(found, numbered{n, filepath.Join(dir, e.Name())})
	}
	slices.SortFunc(found, func(a, b numbered) int { return b.n - a.n })
	names := make([]string, len(found))
	for i, f := range found {
		names[i] = f.name
	}
	return names, nil
}

// Bounds of the backward scan of tailFiles past what it returns.
const (
	// maxPiecesGap is how many records the scan looks at, once it has
	// its n lines, after the last piece it kept of a line whose first
	// pieces it still looks for: the pieces of one line are written
	// close together, and a line that had no earlier record of its
	// stream would otherwise send the scan back to the file's start.
	maxPiecesGap = 256
	// maxOlderRun is how many records older than since in a row end the
	// scan. One older record does not: after the wall clock stepped
	// back, newer records lie before it, and a read without a tail
	// returns them.
	maxOlderRun = 1024
)

// tailFiles returns the last n records (not older than since) of files,
// given oldest first, scanning backwards from the end so that a short tail
// of a large log reads little. For newest it reads only up to the last
// complete line and returns that offset, where following resumes.
func tailFiles(files []*os.File, newest *os.File, n int, since time.Time) ([]Entry, int64, error) {
	var (
		out     []Entry // newest first while collecting
		liveEnd int64
		lines   int // records that end a line (not Partial) in out
		full    bool
		// open: a line of that stream (by streamIndex) is in out by its
		// last piece, and its earlier pieces come before, with the other
		// stream's records maybe in between.
		open [2]bool
		// ended: a record that ends a line of that stream was seen.
		// Pieces of a stream newer than its last such record are a line
		// still being written: they are kept (a follower joins its rest
		// to them) but are not one of the n lines.
		ended [2]bool
		stop  bool
		past  int // records looked at since the last piece kept, once full
		older int // records older than since in a row
	)
	for i := len(files) - 1; i >= 0 && !stop; i-- {
		f := files[i]
		st, err := f.Stat()
		if err != nil {
			return nil, 0, fmt.Errorf("stat log: %w", err)
		}
		end := st.Size()
		done, end, err := scanBackward(f, end, func(line []byte) bool {
			e, err := ParseEntry(line)
			if err != nil {
				return true
			}
			if !since.IsZero() && e.Time.Before(since) {
				if older++; older > maxOlderRun {
					stop = true
					return false
				}
				return true
			}
			older = 0
			// n lines, not n records: the pieces of a long line
			// before its last one come with it, also when the other
			// stream wrote between them.
			si := streamIndex(e.Stream)
			if full {
				if past++; past > maxPiecesGap {
					stop = true
					return false
				}
			}
			switch {
			case !e.Partial:
				// The end of the line before: a line of this stream
				// taken already is whole.
				ended[si], open[si] = true, false
				if full {
					stop = !open[0] && !open[1]
					return !stop
				}
				lines++
				open[si] = true
				full = lines == n
			case !ended[si] || open[si]:
				// A piece of a line in progress or of one taken: the
				// bound counts from here, so that a line of many
				// pieces comes whole.
				open[si] = true
				past = 0
			default:
				return true // a piece of a line beyond the n
			}
			out = append(out, e)
			return true
		})
		if err != nil {
			return nil, 0, err
		}
		if f == newest {
			liveEnd = end
		}
		if done {
			break
		}
	}
	slices.Reverse(out)
	return out, liveEnd, nil
}

// scanBackward calls fn on each complete line of f[:size], last first,
// until fn returns false (done is then true). It returns the offset just
// past the last complete line: a last line without its newline is still
// being written, so it is left out and a following reader starts there.
func scanBackward(f *os.File, size int64, fn func(line []byte) bool) (done bool, end int64, err error) {
	const block = 64 << 10
	pos := size // buf holds f[pos : pos+len(buf)]
	var buf []byte
	more := func() error {
		step := min(int64(block), pos)
		pos -= step
		chunk := make([]byte, step, int(step)+len(buf))
		if _, err := f.ReadAt(chunk, pos); err != nil && err != io.EOF {
			return fmt.Errorf("read log: %w", err)
		}
		buf = append(chunk, buf...)
		return nil
	}
	for bytes.LastIndexByte(buf, '\n') < 0 {
		if pos == 0 {
			return false, 0, nil
		}
		if err := more(); err != nil {
			return false, 0, err
		}
	}
	i := bytes.LastIndexByte(buf, '\n')
	end = pos + int64(i) + 1
	buf = buf[:i+1]
	for len(buf) > 0 {
		body := buf[:len(buf)-1]
		j := bytes.LastIndexByte(body, '\n')
		if j < 0 && pos > 0 {
			if len(buf) > maxRecordSize {
				// Not a record the writer made; stop rather than buffer
				// the whole file.
				return false, end, nil
			}
			if err := more(); err != nil {
				return false, 0, err
			}
			continue
		}
		if !fn(body[j+1:]) {
			return true, end, nil
		}
		buf = buf[:j+1]
	}
	return false, end, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
