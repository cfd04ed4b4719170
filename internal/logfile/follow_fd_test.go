package logfile

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// A follower across many rotations (MaxFiles 1 and 3) holds at most a few
// descriptors while it follows, and none after Close.
func TestFollowerDoesNotLeakDescriptorsAcrossRotations(t *testing.T) {
	for _, files := range []int{1, 3} {
		path := filepath.Join(t.TempDir(), "c.log")
		w, err := Create(path, Options{MaxSize: 300, MaxFiles: files})
		if err != nil {
			t.Fatal(err)
		}
		before := openFDs(t)
		r, err := Open(path, ReadOptions{Follow: true, PollInterval: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		for i := range 200 {
			if err := w.Write(Entry{Time: time.Now(), Stream: Stdout, Line: strconv.Itoa(i)}); err != nil {
				t.Fatal(err)
			}
			e, err := r.Next(ctx)
			if err != nil || e.Line != strconv.Itoa(i) {
				t.Fatalf("files=%d: line %d: %q %v", files, i, e.Line, err)
			}
		}
		during := openFDs(t)
		r.Close()
		after := openFDs(t)
		cancel()
		w.Close()
		if during-before > files+2 || after > before {
			t.Fatalf("files=%d: descriptors before %d, while following %d, after Close %d", files, before, during, after)
		}
	}
}
