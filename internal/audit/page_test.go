package audit

import (
	"context"
	"log/slog"
	"slices"
	"testing"

	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// A reader paging through the chain with afterSeq and a limit (the API
// sets 500 when none is given) got the newest matches after the seq, so
// the records between were never read: afterSeq=5&limit=10 of 20 gave
// 11–20. It gets the first ones after the seq, and paging by the last seq
// it got reads every record once.
func TestAfterSeqPagesThroughEveryRecord(t *testing.T) {
	ctx := context.Background()
	l, err := New(ctx, Config{Store: storetest.New(t)}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(ctx)
	for range 23 {
		l.Record(ctx, Entry{User: "u", Verb: "get"})
	}
	l.Flush(ctx)
	var seqs []uint64
	after := uint64(5)
	for {
		page, err := l.Query(ctx, Filter{AfterSeq: after, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			seqs = append(seqs, e.Seq)
		}
		after = page[len(page)-1].Seq
	}
	var want []uint64
	for s := uint64(6); s <= 23; s++ {
		want = append(want, s)
	}
	if !slices.Equal(seqs, want) {
		t.Fatalf("paged from 5 by 10: %v, want %v", seqs, want)
	}
	// Without afterSeq, a limit still takes the newest.
	page, err := l.Query(ctx, Filter{Limit: 3})
	if err != nil || len(page) != 3 || page[0].Seq != 21 || page[2].Seq != 23 {
		t.Fatalf("newest 3: %v %v", page, err)
	}
}
