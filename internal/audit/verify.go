package audit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
)

// VerifyResult is the outcome of recomputing a chain.
type VerifyResult struct {
	// Valid is true when every record checked out.
	Valid bool `json:"valid"`
	// Checked is how many records were read, the broken one included.
	Checked int `json:"checked"`
	// FirstSeq and LastSeq are the first and last records read.
	FirstSeq uint64 `json:"firstSeq,omitempty"`
	LastSeq  uint64 `json:"lastSeq,omitempty"`
	// LastHash is the hash of the last record read. Kept somewhere the
	// store's writers cannot reach (a SIEM, a ticket), it lets a later
	// Verify prove that nobody rewrote the chain up to that point.
	LastHash string `json:"lastHash,omitempty"`
	// BrokenSeq is the seq of the first broken record (for an unreadable
	// record in a file, the seq it should have had).
	BrokenSeq uint64 `json:"brokenSeq,omitempty"`
	// FirstBroken is that record as read, when it could be parsed.
	FirstBroken *Entry `json:"firstBroken,omitempty"`
	// File and Line locate the broken record in the JSON-lines files.
	File string `json:"file,omitempty"`
	Line int    `json:"line,omitempty"`
	// Reason says what is wrong with it.
	Reason string `json:"reason,omitempty"`
}

// checker walks a chain record by record and stops at the first break.
type checker struct {
	res  VerifyResult
	have bool // prev is known
	prev chainHead
}

// anchorAt says what the record before the first one is, when known.
func (c *checker) anchorAt(a chainHead) {
	c.have, c.prev = true, a
}

// check checks the next record. keySeq is the seq the record is stored
// under (0 when it has none, as in a file). It returns false at a break.
func (c *checker) check(keySeq uint64, raw []byte) bool {
	c.res.Checked++
	expect := keySeq
	if expect == 0 && c.have {
		expect = c.prev.seq + 1
	}
	fail := func(seq uint64, e *Entry, format string, args ...any) bool {
		c.res.BrokenSeq, c.res.FirstBroken = seq, e
		c.res.Reason = fmt.Sprintf(format, args...)
		return false
	}
	e, err := CheckRecord(raw)
	if err != nil {
		if e.Seq == 0 {
			return fail(expect, nil, "record %d is unreadable: %v", expect, err)
		}
		// A record that fails its own check cannot be trusted about its
		// seq either: name the place it occupies in the chain.
		seq := e.Seq
		if expect != 0 {
			seq = expect
		}
		if seq != e.Seq {
			return fail(seq, &e, "record %d (which claims to be %d): %v", seq, e.Seq, err)
		}
		return fail(seq, &e, "record %d: %v", seq, err)
	}
	if keySeq != 0 && e.Seq != keySeq {
		return fail(keySeq, &e, "record stored as %d says it is %d", keySeq, e.Seq)
	}
	if c.res.FirstSeq == 0 {
		c.res.FirstSeq = e.Seq
	}
	if c.have {
		switch {
		case e.Seq <= c.prev.seq:
			return fail(e.Seq, &e, "record %d comes after record %d: records are out of order or repeated", e.Seq, c.prev.seq)
		case e.Seq != c.prev.seq+1:
			return fail(e.Seq, &e, "records %d to %d are missing before record %d", c.prev.seq+1, e.Seq-1, e.Seq)
		case e.Prev != c.prev.hash:
			return fail(e.Seq, &e, "record %d's prev %s does not match record %d's hash %s", e.Seq, short(e.Prev), c.prev.seq, short(c.prev.hash))
		}
	} else if e.Seq == 1 && e.Prev != "" {
		return fail(e.Seq, &e, "record 1 must have an empty prev")
	}
	c.have, c.prev = true, chainHead{seq: e.Seq, hash: e.Hash}
	c.res.LastSeq, c.res.LastHash = e.Seq, e.Hash
	return true
}

func (c *checker) result() VerifyResult {
	c.res.Valid = c.res.Reason == ""
	return c.res
}

// Verify recomputes the chain in the store from the oldest kept record
// (checked against the anchor pruning left, if any) to the newest, and
// reports the first broken record. It reads one consistent snapshot, so
// records written meanwhile are not part of it. An error means the check
// could not run; a broken chain is a result, not an error.
func (l *Log) Verify(ctx context.Context) (VerifyResult, error) {
	s := l.st
	resp, err := s.cli.Get(ctx, s.anchorKey())
	if err != nil {
		return VerifyResult{}, fmt.Errorf("verify audit chain: %w", unavailable(err))
	}
	rev := resp.Header.Revision
	var c checker
	a, _, aerr := decodeAnchor(resp.Kvs)
	if aerr != nil {
		// Report it at the record it anchors.
		oldest, _, err := s.bounds(ctx, rev)
		if err != nil {
			return VerifyResult{}, err
		}
		c.res.BrokenSeq, c.res.Reason = oldest, fmt.Sprintf("the oldest record (%d) cannot be checked: %v", oldest, aerr)
		return c.result(), nil
	}
	// Without an anchor nothing was ever pruned, so the chain must start
	// at record 1: deleting the oldest records is caught too.
	c.anchorAt(chainHead{seq: a.Seq, hash: a.Hash})
	_, err = s.scan(ctx, 1, 0, false, rev, func(seq uint64, raw []byte) (bool, error) {
		return c.check(seq, raw), nil
	})
	if err != nil {
		return VerifyResult{}, fmt.Errorf("verify audit chain: %w", err)
	}
	return c.result(), nil
}

// maxLine bounds one line of a JSON-lines file; a record is far smaller.
const maxLine = 1 << 20

// VerifyFile checks one JSON-lines file on its own: every record's hash,
// and every link but the first record's Prev (which points into the
// previous file). Use VerifyDir to check a directory of rotated files as
// one chain.
func VerifyFile(path string) (VerifyResult, error) {
	var c checker
	if err := verifyFileInto(&c, path); err != nil {
		return VerifyResult{}, err
	}
	return c.result(), nil
}

// VerifyDir checks all audit files in dir (see Files) as one chain.
func VerifyDir(dir string) (VerifyResult, error) {
	files, err := Files(dir)
	if err != nil {
		return VerifyResult{}, err
	}
	if len(files) == 0 {
		// A wrong --dir, or one whose files were all deleted: nothing
		// checked is not an intact chain.
		return VerifyResult{}, fmt.Errorf("no audit files (%s, audit-*.jsonl) in %s", ActiveFile, dir)
	}
	var c checker
	for _, f := range files {
		if err := verifyFileInto(&c, f); err != nil {
			return VerifyResult{}, err
		}
		if c.res.Reason != "" {
			break
		}
	}
	return c.result(), nil
}

func verifyFileInto(c *checker, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("verify audit file: %w", err)
	}
	defer f.Close()
	return verifyReader(c, f, path)
}

func verifyReader(c *checker, r io.Reader, name string) error {
	br := bufio.NewReaderSize(r, 64<<10)
	for line := 1; ; line++ {
		raw, err := readLine(br)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if errors.Is(err, errLineTooLong) {
			c.res.Checked++
			seq := uint64(0)
			if c.have {
				seq = c.prev.seq + 1
			}
			c.res.BrokenSeq, c.res.File, c.res.Line = seq, name, line
			c.res.Reason = fmt.Sprintf("line %d is longer than any record can be", line)
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
		if !c.check(0, raw) {
			c.res.File, c.res.Line = name, line
			return nil
		}
	}
}

var errLineTooLong = errors.New("line too long")

// readLine returns the next line without its newline. A last line
// without a newline is returned as is: a writer never leaves one, so it
// fails the record check if it was cut.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxLine {
			return nil, errLineTooLong
		}
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) > 0:
			return line, nil
		default:
			return nil, err
		}
	}
}
