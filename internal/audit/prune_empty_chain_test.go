package audit

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Two servers share one chain and retention has pruned every record, so
// only the anchor says where the chain ends. commit guarded the batch
// with "no record at or after its first seq", which an empty record range
// passes for every writer: a server whose view of the end predated the
// last prune wrote a seq at or below the anchor (a reused seq with a
// different hash), forking the chain, and Verify reported the trail
// broken.
func TestWritersAfterRetentionPrunedEveryRecordKeepOneChain(t *testing.T) {
	st := sharedStore(t)
	cli := st.Client()
	prefix := prefixFor(t)
	cfg := Config{Store: st, Prefix: prefix, Retention: time.Hour, PruneInterval: time.Hour}
	old := func(from, n int) []Entry {
		es := requests(from, n)
		for i := range es {
			es[i].Time = time.Now().Add(-3 * time.Hour)
		}
		return es
	}
	prune := func(l *Log, want int) {
		t.Helper()
		if n, err := l.Prune(t.Context()); err != nil || n != want {
			t.Fatalf("prune = %d, %v; want %d records deleted", n, err, want)
		}
	}

	// Every record ever written, from etcd's history: pruning deletes
	// them from the store, and a fork hides among the deleted ones.
	start, err := cli.Get(t.Context(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	sentinel := prefix + "test-end"
	watch := cli.Watch(t.Context(), prefix, clientv3.WithPrefix(), clientv3.WithRev(start.Header.Revision+1))
	history := make(chan map[uint64][][]byte, 1)
	go func() {
		puts := map[uint64][][]byte{}
		defer func() { history <- puts }()
		s := &storeChain{prefix: prefix}
		for resp := range watch {
			for _, ev := range resp.Events {
				if string(ev.Kv.Key) == sentinel {
					return
				}
				if seq, err := s.seqOf(ev.Kv.Key); err == nil && ev.Type == clientv3.EventTypePut {
					puts[seq] = append(puts[seq], ev.Kv.Value)
				}
			}
		}
	}()

	a := openLog(t, cfg)
	b := openLog(t, cfg)

	// a has seen the store empty; b writes and retention prunes it all.
	recordAll(t, b, old(0, 10)...)
	prune(b, 10)
	recordAll(t, a, old(10, 1)...)
	if s := a.Stats(); s.LastSeq != 11 {
		t.Errorf("after every record was pruned, a appended as seq %d; want 11 (after the anchor at 10)", s.LastSeq)
	}
	// Now b's view (10) is behind: a wrote 11 and pruning removed it.
	prune(b, 1)
	recordAll(t, b, old(11, 1)...)
	if s := b.Stats(); s.LastSeq != 12 {
		t.Errorf("after every record was pruned, b appended as seq %d; want 12 (after the anchor at 11)", s.LastSeq)
	}

	// Both write at once while retention keeps emptying the store.
	const each = 150
	flush := func(l *Log) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := l.Flush(ctx); err != nil {
			t.Error(err)
		}
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	for w, l := range []*Log{a, b} {
		wg.Go(func() {
			for i := range each {
				l.Record(context.Background(), old(1000*(w+1)+i, 1)[0])
				if i%5 == 0 {
					flush(l)
				}
			}
			flush(l)
		})
	}
	pruned := make(chan struct{})
	go func() {
		defer close(pruned)
		for {
			if _, err := b.Prune(context.Background()); err != nil {
				t.Errorf("prune: %v", err)
			}
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	wg.Wait()
	close(done)
	<-pruned

	res, err := a.Verify(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !res.Valid {
		t.Errorf("verify of the store: %+v; want a valid chain", res)
	}

	if _, err := cli.Put(t.Context(), sentinel, ""); err != nil {
		t.Fatal(err)
	}
	var puts map[uint64][][]byte
	select {
	case puts = <-history:
	case <-time.After(30 * time.Second):
		t.Fatal("the watch did not deliver the store's history")
	}
	total := int(a.Stats().Persisted + b.Stats().Persisted)
	seqs := slices.Sorted(func(yield func(uint64) bool) {
		for seq := range puts {
			if !yield(seq) {
				return
			}
		}
	})
	if len(seqs) == 0 {
		t.Fatalf("%d records were persisted, but the store saw none", total)
	}
	if len(seqs) != total || seqs[0] != 1 || seqs[len(seqs)-1] != uint64(total) {
		t.Fatalf("%d records were persisted, but the store saw %d seqs from %d to %d", total, len(seqs), seqs[0], seqs[len(seqs)-1])
	}
	// The whole history, as written, must be one chain from record 1.
	var c checker
	for _, seq := range seqs {
		if n := len(puts[seq]); n != 1 {
			t.Fatalf("seq %d was written %d times: the chain forked", seq, n)
		}
		if !c.check(seq, puts[seq][0]) {
			break
		}
	}
	if r := c.result(); !r.Valid {
		t.Fatalf("the chain as written: %+v; want one valid chain", r)
	}
}
