package apiserver

import (
	"testing"
	"time"
)

// A check that read the Node before a join and cached what it read after
// the join had dropped the cache kept the old machine's certificates
// accepted for up to nodeJoinsTTL more. What a read began before a forget
// is not cached.
func TestAReadBeforeAJoinIsNotCachedAfterIt(t *testing.T) {
	var j nodeJoins
	_, ok, since := j.cached("worker-1")
	if ok {
		t.Fatal("cached before anything was read")
	}
	j.forget("worker-1") // a join, while the read was on its way
	j.set("worker-1", time.Time{}, since)
	if _, ok, _ := j.cached("worker-1"); ok {
		t.Error("a read from before the join was cached after it")
	}
	_, _, since = j.cached("worker-1")
	at := time.Now()
	j.set("worker-1", at, since)
	if got, ok, _ := j.cached("worker-1"); !ok || !got.Equal(at) {
		t.Errorf("a read after the join: cached %v %v, want %v", got, ok, at)
	}
}
