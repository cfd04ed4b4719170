package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// ActiveFile is the name of the JSON-lines file being appended to.
// Rotated files are named RotatedFile(first, last).
const ActiveFile = "audit.jsonl"

// RotatedFile names a rotated file by the first and last seq it holds, so
// that name order is chain order.
func RotatedFile(first, last uint64) string {
	return fmt.Sprintf("audit-%012d-%012d.jsonl", first, last)
}

// parseRotated returns the seqs in a rotated file's name.
func parseRotated(name string) (first, last uint64, ok bool) {
	mid, ok := strings.CutPrefix(name, "audit-")
	if !ok {
		return 0, 0, false
	}
	mid, ok = strings.CutSuffix(mid, ".jsonl")
	if !ok {
		return 0, 0, false
	}
	a, b, ok := strings.Cut(mid, "-")
	if !ok {
		return 0, 0, false
	}
	f, err1 := strconv.ParseUint(a, 10, 64)
	l, err2 := strconv.ParseUint(b, 10, 64)
	return f, l, err1 == nil && err2 == nil
}

// Files lists the audit files in dir in chain order: the rotated files,
// oldest first, then the active file if it exists.
func Files(dir string) ([]string, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list audit files: %w", err)
	}
	type rf struct {
		name  string
		first uint64
	}
	var rot []rf
	active := false
	for _, de := range des {
		if de.IsDir() {
			continue
		}
		if de.Name() == ActiveFile {
			active = true
		} else if first, _, ok := parseRotated(de.Name()); ok {
			rot = append(rot, rf{de.Name(), first})
		}
	}
	sort.Slice(rot, func(i, j int) bool { return rot[i].first < rot[j].first })
	out := make([]string, 0, len(rot)+1)
	for _, r := range rot {
		out = append(out, filepath.Join(dir, r.name))
	}
	if active {
		out = append(out, filepath.Join(dir, ActiveFile))
	}
	return out, nil
}

// fileWriter appends records to audit.jsonl and rotates it. It belongs to
// the writer goroutine.
type fileWriter struct {
	dir      string
	maxSize  int64
	maxFiles int
	log      *slog.Logger

	f        *os.File
	size     int64
	firstSeq uint64 // first record in the active file (0: empty)
	lastSeq  uint64 // last record written to any file
	lastHash string
}

func openFileWriter(dir string, maxSize int64, maxFiles int, log *slog.Logger) (*fileWriter, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit file directory: %w", err)
	}
	fw := &fileWriter{dir: dir, maxSize: maxSize, maxFiles: maxFiles, log: log}
	path := filepath.Join(dir, ActiveFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit file: %w", err)
	}
	fw.f = f
	if err := fw.recover(); err != nil {
		f.Close()
		return nil, err
	}
	if fw.size == 0 {
		// Continue the chain from the newest rotated file, if any.
		files, err := Files(dir)
		if err != nil {
			f.Close()
			return nil, err
		}
		for i := len(files) - 1; i >= 0; i-- {
			if filepath.Base(files[i]) == ActiveFile {
				continue
			}
			_, last, err := fileEnds(files[i])
			if err == nil && last != nil {
				if e, err := ParseRecord(last); err == nil {
					fw.lastSeq, fw.lastHash = e.Seq, e.Hash
				}
			}
			break
		}
	}
	return fw, nil
}

// recover finds the first and last record of the active file. A crash
// can leave a partial last line; it is not a record (the store has the
// full one, and backfill copies it back), so it is cut off.
func (fw *fileWriter) recover() error {
	st, err := fw.f.Stat()
	if err != nil {
		return fmt.Errorf("audit file: %w", err)
	}
	fw.size = st.Size()
	if fw.size == 0 {
		return nil
	}
	end, err := lastNewline(fw.f, fw.size)
	if err != nil {
		return err
	}
	if end != fw.size {
		fw.log.Warn("cutting a partial record off the end of the audit file", "file", fw.f.Name(), "bytes", fw.size-end)
		if err := fw.f.Truncate(end); err != nil {
			return fmt.Errorf("audit file: cut partial record: %w", err)
		}
		fw.size = end
	}
	if fw.size == 0 {
		return nil
	}
	first, last, err := fileEnds(fw.f.Name())
	if err != nil {
		return err
	}
	if e, err := ParseRecord(first); err == nil {
		fw.firstSeq = e.Seq
	}
	if e, err := ParseRecord(last); err == nil {
		fw.lastSeq, fw.lastHash = e.Seq, e.Hash
	} else {
		fw.log.Warn("the last line of the audit file is not a record; the file's chain will show a break", "file", fw.f.Name(), "err", err)
	}
	return nil
}

// lastNewline returns the offset just after the last '\n' in the first
// size bytes of f (0 if there is none).
func lastNewline(f *os.File, size int64) (int64, error) {
	buf := make([]byte, 64<<10)
	for end := size; end > 0; {
		start := max(0, end-int64(len(buf)))
		b := buf[:end-start]
		if _, err := f.ReadAt(b, start); err != nil && !errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("read audit file: %w", err)
		}
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			return start + int64(i) + 1, nil
		}
		end = start
	}
	return 0, nil
}

// lastLine returns the first and last lines of a file that ends in a
// newline (without the newline), reading only its two ends.
func fileEnds(path string) (first, last []byte, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("open audit file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	size := st.Size()
	if size == 0 {
		return nil, nil, nil
	}
	end, err := lastNewline(f, size)
	if err != nil {
		return nil, nil, err
	}
	if end == 0 {
		return nil, nil, nil
	}
	start, err := lastNewline(f, end-1)
	if err != nil {
		return nil, nil, err
	}
	last = make([]byte, end-1-start)
	if _, err := f.ReadAt(last, start); err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, err
	}
	head := make([]byte, min(size, 64<<10))
	n, _ := f.ReadAt(head, 0)
	head = head[:n]
	if i := bytes.IndexByte(head, '\n'); i >= 0 {
		first = head[:i]
	}
	return first, last, nil
}

// append writes records (in chain order) to the active file, rotating it
// first when they would not fit, and syncs. On a write error the file is
// cut back to where it was, so it never holds half a batch.
func (fw *fileWriter) append(recs []encoded) error {
	if len(recs) == 0 {
		return nil
	}
	if fw.f == nil {
		// An earlier rotation failed half way; start a file again.
		f, err := os.OpenFile(filepath.Join(fw.dir, ActiveFile), os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("open audit file: %w", err)
		}
		fw.f = f
		if err := fw.recover(); err != nil {
			return err
		}
	}
	n := 0
	for _, r := range recs {
		n += len(r.line) + 1
	}
	if fw.size > 0 && fw.size+int64(n) > fw.maxSize {
		if err := fw.rotate(); err != nil {
			return err
		}
	}
	buf := make([]byte, 0, n)
	for _, r := range recs {
		buf = append(buf, r.line...)
		buf = append(buf, '\n')
	}
	if _, err := fw.f.Write(buf); err != nil {
		fw.f.Truncate(fw.size)
		return fmt.Errorf("write audit file: %w", err)
	}
	if err := fw.f.Sync(); err != nil {
		fw.f.Truncate(fw.size)
		return fmt.Errorf("sync audit file: %w", err)
	}
	if fw.size == 0 {
		fw.firstSeq = recs[0].seq
	}
	fw.size += int64(n)
	last := recs[len(recs)-1]
	fw.lastSeq, fw.lastHash = last.seq, last.hash
	return nil
}

// rotate renames the active file after the seqs it holds, starts a new
// one and deletes the oldest rotated files beyond maxFiles.
func (fw *fileWriter) rotate() error {
	active := filepath.Join(fw.dir, ActiveFile)
	rotated := filepath.Join(fw.dir, RotatedFile(fw.firstSeq, fw.lastSeq))
	if err := fw.f.Close(); err != nil {
		return fmt.Errorf("close audit file: %w", err)
	}
	fw.f = nil
	if err := os.Rename(active, rotated); err != nil {
		return fmt.Errorf("rotate audit file: %w", err)
	}
	f, err := os.OpenFile(active, os.O_RDWR|os.O_CREATE|os.O_APPEND|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("open new audit file: %w", err)
	}
	fw.f, fw.size, fw.firstSeq = f, 0, 0
	if d, err := os.Open(fw.dir); err == nil {
		d.Sync() // make the rename durable
		d.Close()
	}
	files, err := Files(fw.dir)
	if err != nil {
		return err
	}
	rotatedFiles := files[:len(files)-1] // the last one is the new active file
	for len(rotatedFiles) > fw.maxFiles {
		if err := os.Remove(rotatedFiles[0]); err != nil {
			fw.log.Warn("cannot delete old audit file", "file", rotatedFiles[0], "err", err)
		} else {
			fw.log.Info("deleted old audit file", "file", rotatedFiles[0])
		}
		rotatedFiles = rotatedFiles[1:]
	}
	return nil
}

func (fw *fileWriter) close() error {
	if fw.f == nil {
		return nil
	}
	err := fw.f.Close()
	fw.f = nil
	if err != nil {
		return fmt.Errorf("close audit file: %w", err)
	}
	return nil
}
