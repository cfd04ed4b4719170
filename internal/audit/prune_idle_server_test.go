package audit

import (
	"testing"
)

// Two servers share one chain. Server a opened the log (chain end: 0) and
// then saw no request while server b wrote and pruning (here MaxRecords;
// by default Retention does the same after a quiet week) deleted the
// oldest records, a's next slot among them. commit guarded a batch only
// by "the first key was never created" (CreateRevision == 0), which a
// deleted key satisfies again: a wrote seq 1 below the anchor and forked
// the chain, and Verify reported the trail broken.
func TestIdleServerDoesNotRewritePrunedSlots(t *testing.T) {
	st := sharedStore(t)
	prefix := prefixFor(t)
	a := openLog(t, Config{Store: st, Prefix: prefix, MaxRecords: 5})
	b := openLog(t, Config{Store: st, Prefix: prefix, MaxRecords: 5})
	recordAll(t, b, requests(0, 20)...)
	if n, err := b.Prune(t.Context()); err != nil || n != 15 {
		t.Fatalf("prune = %d, %v; want 15 records deleted", n, err)
	}
	recordAll(t, a, request(100))
	if s := a.Stats(); s.LastSeq != 21 {
		t.Errorf("the idle server appended its record as seq %d; want 21 (after b's 20)", s.LastSeq)
	}
	res, err := a.Verify(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !res.Valid {
		t.Errorf("verify after an idle server wrote: %+v; want a valid chain", res)
	}
}
