package keylock

import (
	"sync"
	"testing"
)

// Work under one key does not interleave; under different keys it may.
func TestLocks(t *testing.T) {
	var l Locks
	var wg sync.WaitGroup
	counts := map[string]int{}
	var mu sync.Mutex // guards the map itself, not the sequences
	for _, key := range []string{"a", "b"} {
		for range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				unlock := l.Lock(key)
				defer unlock()
				mu.Lock()
				n := counts[key]
				mu.Unlock()
				// A read-modify-write that another holder of key would
				// break if the lock did not hold.
				mu.Lock()
				counts[key] = n + 1
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	if counts["a"] != 50 || counts["b"] != 50 {
		t.Fatalf("counts %v; want 50 each", counts)
	}
	// Different keys do not wait on each other.
	unlockA := l.Lock("a")
	unlockB := l.Lock("b")
	unlockB()
	unlockA()
}
