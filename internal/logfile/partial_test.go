package logfile

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// A record cut short by a full disk (write(2) stores what fits, then
// fails; here the file size limit stands in for the full disk) gets its
// line ended before the next record, written once there is room again,
// so that one is read back rather than lost in a line joined to the
// fragment. The file is not cut back: a follower may have read past it.
func TestARecordCutShortDoesNotSwallowTheNext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := Create(path, Options{MaxSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.writeNow(Entry{Stream: Stdout, Line: "first"}); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Skip(err)
	}
	lim := old
	lim.Cur = uint64(st.Size() + 10) // room for 10 bytes of the next record
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Skip(err)
	}
	werr := w.writeNow(Entry{Stream: Stdout, Line: "second, cut short by the full disk"})
	syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old)
	if werr == nil {
		t.Skip("the write was not cut short")
	}
	if err := w.writeNow(Entry{Stream: Stdout, Line: "third, after the disk recovered"}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); true {
		t.Logf("file: %q", b)
	}
	r, err := Open(path, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got []string
	for {
		e, err := r.Next(context.Background())
		if err != nil {
			break
		}
		got = append(got, e.Line)
	}
	if len(got) != 2 || got[1] != "third, after the disk recovered" {
		t.Fatalf("read back %q; want the first and third lines (the second failed)", got)
	}
}
