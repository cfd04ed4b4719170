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
	// Since drops lines older than this time (zero: keep all); a line
	// stored in pieces is as old as its first piece.
	Since time.Time
	// Tail returns only the last Tail lines (by their last piece) that
	// pass Since, whole, and a line still being written that passes it;
	// zero or negative returns all. To follow new records only, set
	// Since to now.
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
	// line says, by stream, what becomes of the next pieces of the line
	// being read.
	line [2]lineState
	// dropRest says, by stream, that the tail scan left out a line still
	// being written: once pending is returned, that stream's line is
	// lineDrop (the next pieces of a log written before later pieces
	// were marked do not say they are not a line's first).
	dropRest [2]bool
}

type lineState uint8

const (
	lineNone lineState = iota // between lines: the next record starts one
	lineKeep                  // its first piece was returned or is held
	lineDrop                  // begun before Since, or before the reader
)

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
		entries, end, dropRest, err := tailFiles(all, newest, opts.Tail, opts.Since)
		closeAll(all[:len(all)-1])
		if err == nil {
			_, err = newest.Seek(end, io.SeekStart)
		}
		if err != nil {
			newest.Close()
			return nil, fmt.Errorf("tail log: %w", err)
		}
		r.pending, r.dropRest = entries, dropRest
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
// its first piece, and Since selects it by that time. The rest of a line
// whose first piece lies before the reader's start (a tail, or the oldest
// file after older ones were deleted) is not returned. Without Follow it
// returns io.EOF after the last line; with Follow it waits for more and
// returns ctx's error when ctx ends (pieces read so far are kept for the
// next call).
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
		switch r.line[i] {
		case lineNone:
			if e.cont || (!r.opts.Since.IsZero() && e.Time.Before(r.opts.Since)) {
				if e.Partial {
					r.line[i] = lineDrop
				}
				continue
			}
		case lineDrop:
			if !e.Partial {
				r.line[i] = lineNone
			}
			continue
		}
		r.line[i] = lineNone
		if e.Partial {
			r.line[i] = lineKeep
		}
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
	for i, drop := range r.dropRest {
		if drop {
			r.line[i], r.dropRest[i] = lineDrop, false
		}
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
		if errors.Is(err, errRotatingTooFast) {
			moved, err = false, nil // the next poll looks again
		}
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
		lastErr = errRotatingTooFast
	}
	return nil, lastErr
}

// errRotatingTooFast: every attempt of openSnapshot saw a rotation. A
// follower tries again at its next poll rather than end.
var errRotatingTooFast = errors.New("log rotates too fast to open a consistent set of files")

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
	// maxPiecesGap is how many records the scan looks at, once it has its
	// n lines, for the last record of a stream it has not met yet: a line
	// of that stream still being written is returned with the tail, so
	// that a follower joins its rest to it. A stream silent for longer is
	// taken to have none, and the rest of one it had is not returned.
	// It also bounds how many records a line waits for the record before
	// its earliest piece when that piece has no "c" mark (settle): in a
	// log written before the mark, a line whose pieces lie further apart
	// is cut there, and its last pieces are taken for a line.
	maxPiecesGap = 256
	// maxOlderRun is how many records older than since in a row end the
	// scan. One older record does not: after the wall clock stepped
	// back, newer records lie before it, and a read without a tail
	// returns them. A line whose first piece was not met by then is
	// taken to have begun before since, unless its earliest piece met
	// has no "c" mark: it is then taken for the first.
	maxOlderRun = 1024
)

// tailLine is a line met by the backward scan of tailFiles.
type tailLine struct {
	pieces  []tailPiece // the last first
	decided bool        // its first piece was met
	kept    bool        // decided, and its first piece passes since
	// maybeFirst is set while its earliest piece met has no "c" mark but
	// the record before it in its stream is not met yet: in a log written
	// before later pieces were marked, that record being a partial one
	// makes it a piece of this line.
	maybeFirst bool
}

type tailPiece struct {
	seq int // order in which the scan met it: higher is older
	e   Entry
}

// tailFiles returns the records of the last n lines (by their last piece)
// whose first piece is not older than since, all the pieces of each, and
// those of a line still being written that passes since, from files given
// oldest first. It scans backwards from the end, so that a short tail of a
// large log reads little, and on to the first piece of every line it may
// return. For newest it reads only up to the last complete record and
// returns that offset, where following resumes; dropRest says, by stream,
// that a line still being written there is not returned (it began before
// since, or its start is gone), so that a follower drops its rest as a
// full read does.
func tailFiles(files []*os.File, newest *os.File, n int, since time.Time) (entries []Entry, end int64, dropRest [2]bool, err error) {
	var (
		ended []*tailLine // lines by their last piece, the last first
		// inProgress is, by streamIndex, the line whose piece is the
		// last record of that stream.
		inProgress [2]*tailLine
		// open is, by streamIndex, the line whose earlier pieces the
		// scan meets next.
		open    [2]*tailLine
		seen    [2]bool // a record of that stream was met
		seq     int
		older   int  // records older than since in a row
		counted int  // ended[:counted] are decided
		kept    int  // kept lines in ended[:counted]
		enough  bool // kept == n
		beyond  int  // records met once enough
		liveEnd int64
	)
	decide := func(l *tailLine, first Entry) {
		l.decided = true
		l.kept = since.IsZero() || !first.Time.Before(since)
		if !l.kept {
			l.pieces = nil
		}
	}
	// settle decides lines waiting on the record before their earliest
	// piece (maybeFirst) once maxPiecesGap records went by without it,
	// taking that piece for their first: a bound on the scan, which cuts
	// a line of a log from before the "c" mark whose pieces lie further
	// apart.
	settle := func() {
		for si, l := range open {
			if l != nil && l.maybeFirst && seq-l.pieces[len(l.pieces)-1].seq > maxPiecesGap {
				open[si] = nil
				decide(l, l.pieces[len(l.pieces)-1].e)
			}
		}
	}
	complete := func() bool {
		settle()
		for !enough && counted < len(ended) && ended[counted].decided {
			if ended[counted].kept {
				kept++
			}
			counted++
			enough = kept == n
		}
		if !enough {
			return false
		}
		for _, l := range inProgress {
			if l != nil && !l.decided {
				return false
			}
		}
		return seen[0] && seen[1] || beyond > maxPiecesGap
	}
	// leaveOpen keeps l open for the scan to meet its earlier pieces
	// after e, its earliest piece met so far. A piece marked "c" has
	// some; one without the mark may still have them in a log written
	// before the mark existed, as the record before it in its stream
	// being partial tells.
	leaveOpen := func(si int, l *tailLine, e Entry) {
		l.maybeFirst = !e.cont
		open[si] = l
	}
	visit := func(line []byte) bool {
		e, err := ParseEntry(line)
		if err != nil {
			return true
		}
		seq++
		if !since.IsZero() && e.Time.Before(since) {
			if older++; older > maxOlderRun {
				return false
			}
		} else {
			older = 0
		}
		if enough {
			beyond++
		}
		si := streamIndex(e.Stream)
		p := tailPiece{seq, e}
		if l := open[si]; l != nil {
			open[si] = nil
			if e.Partial {
				l.pieces = append(l.pieces, p)
				leaveOpen(si, l, e)
				return !complete()
			}
			if l.maybeFirst {
				// Its earliest piece met was its first.
				decide(l, l.pieces[len(l.pieces)-1].e)
			} else {
				// The end of a line before a later piece: a damaged
				// log. The pieces met are not returned (l stays
				// undecided).
				l.pieces = nil
			}
		}
		var l *tailLine
		switch {
		case !e.Partial && !enough:
			l = &tailLine{}
			ended = append(ended, l)
		case !e.Partial:
			// A line before the n: only whether its stream was seen
			// matters now.
		case !seen[si]:
			l = &tailLine{}
			inProgress[si] = l
		default:
			// An earlier piece of a line not returned (before the n),
			// or of one settled as begun after it.
		}
		seen[si] = true
		if l != nil {
			l.pieces = append(l.pieces, p)
			leaveOpen(si, l, e)
		}
		return !complete()
	}
	for i := len(files) - 1; i >= 0; i-- {
		f := files[i]
		st, err := f.Stat()
		if err != nil {
			return nil, 0, dropRest, fmt.Errorf("stat log: %w", err)
		}
		done, end, err := scanBackward(f, st.Size(), visit)
		if err != nil {
			return nil, 0, dropRest, err
		}
		if f == newest {
			liveEnd = end
		}
		if done {
			break
		}
	}

	// Lines waiting on the record before their earliest piece when the
	// scan ended began with that piece. Other lines not decided lost their
	// first piece (with a deleted file) or began before since.
	for _, l := range open {
		if l != nil && l.maybeFirst {
			decide(l, l.pieces[len(l.pieces)-1].e)
		}
	}
	var out []tailPiece
	taken := 0
	for _, l := range ended {
		if taken == n {
			break
		}
		if l.kept {
			taken++
			out = append(out, l.pieces...)
		}
	}
	for si, l := range inProgress {
		switch {
		case l == nil:
		case l.kept:
			out = append(out, l.pieces...)
		default:
			dropRest[si] = true
		}
	}
	slices.SortFunc(out, func(a, b tailPiece) int { return b.seq - a.seq })
	entries = make([]Entry, len(out))
	for i, p := range out {
		entries[i] = p.e
	}
	return entries, liveEnd, dropRest, nil
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
