package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// Batch limits. etcd refuses transactions of more than 128 operations
// and requests over 1.5 MiB by default; a batch stays well inside both.
const (
	maxBatchRecords = 100
	maxBatchBytes   = 512 << 10
)

// seqDigits zero-pads sequence numbers in keys so that key order is chain
// order (a uint64 has at most 20 digits).
const seqDigits = 20

// chainHead is the last record of the chain.
type chainHead struct {
	seq  uint64
	hash string
}

// encoded is a record ready to be stored: its JSON line and chain place.
type encoded struct {
	seq  uint64
	hash string
	line []byte
}

// anchor is what pruning leaves behind: the seq and hash of the last
// record it deleted, so the oldest kept record's Prev can still be
// checked.
type anchor struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// storeChain is the audit chain in etcd:
//
//	<prefix>rec/<seq, 20 digits>  one record, its JSON line
//	<prefix>anchor                the anchor (absent until the first prune)
type storeChain struct {
	cli    *clientv3.Client
	prefix string
	// last, storeEmpty and anchorRev belong to the writer goroutine.
	last       chainHead
	storeEmpty bool
	// anchorRev is the anchor's ModRevision (0: absent) when last was
	// read or written; commit requires it unchanged.
	anchorRev int64
	// races counts batches re-chained because another writer took
	// their slot first.
	races atomic.Uint64
}

func (s *storeChain) recPrefix() string { return s.prefix + "rec/" }
func (s *storeChain) anchorKey() string { return s.prefix + "anchor" }
func (s *storeChain) key(seq uint64) string {
	return fmt.Sprintf("%s%0*d", s.recPrefix(), seqDigits, seq)
}

func (s *storeChain) seqOf(key []byte) (uint64, error) {
	digits, ok := strings.CutPrefix(string(key), s.recPrefix())
	if !ok {
		return 0, fmt.Errorf("audit key %q outside %s", key, s.recPrefix())
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("audit key %q: %w", key, err)
	}
	return n, nil
}

func unavailable(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w: %v", v1.ErrUnavailable, err)
}

// head reads the end of the chain: the newest record, or the anchor when
// pruning removed every record (or, in a damaged store, when the anchor
// is past the newest record). empty says whether no record is stored;
// anchorRev is the anchor's ModRevision (0 when there is none).
func (s *storeChain) head(ctx context.Context) (h chainHead, empty bool, anchorRev int64, err error) {
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(s.recPrefix(), clientv3.WithLastKey()...),
		clientv3.OpGet(s.anchorKey()),
	).Commit()
	if err != nil {
		return chainHead{}, false, 0, fmt.Errorf("read the end of the audit chain: %w", unavailable(err))
	}
	// A damaged anchor is left for Verify to report; the chain then
	// starts again from record 1 rather than the log refusing to start.
	a, anchorRev, _ := decodeAnchor(resp.Responses[1].GetResponseRange().Kvs)
	h = chainHead{seq: a.Seq, hash: a.Hash}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return h, true, anchorRev, nil
	}
	seq, err := s.seqOf(kvs[0].Key)
	if err != nil {
		return chainHead{}, false, 0, err
	}
	// Seqs up to the anchor's were used, even if no record holds them
	// now: never continue below it.
	if seq < a.Seq {
		return h, false, anchorRev, nil
	}
	e, err := ParseRecord(kvs[0].Value)
	if err != nil {
		// The newest record is unreadable: carry on after it, so
		// Verify shows the damage rather than the log stopping.
		return chainHead{seq: seq, hash: ""}, false, anchorRev, nil
	}
	return chainHead{seq: seq, hash: e.Hash}, false, anchorRev, nil
}

func decodeAnchor(kvs []*mvccpb.KeyValue) (anchor, int64, error) {
	if len(kvs) == 0 {
		return anchor{}, 0, nil
	}
	var a anchor
	if err := json.Unmarshal(kvs[0].Value, &a); err != nil {
		return anchor{}, kvs[0].ModRevision, fmt.Errorf("audit anchor is not readable: %w", err)
	}
	return a, kvs[0].ModRevision, nil
}

// chain gives entries their place after head and encodes them, up to one
// batch's worth.
func chain(head chainHead, entries []Entry) ([]encoded, error) {
	out := make([]encoded, 0, min(len(entries), maxBatchRecords))
	size := 0
	for i := range entries {
		e := entries[i]
		e.normalize()
		e.Seq, e.Prev = head.seq+1, head.hash
		e.Hash = e.ComputeHash()
		line, err := e.Encode()
		if err != nil {
			return nil, err
		}
		if len(out) > 0 && (len(out) == maxBatchRecords || size+len(line) > maxBatchBytes) {
			break
		}
		out = append(out, encoded{seq: e.Seq, hash: e.Hash, line: line})
		size += len(line)
		head = chainHead{seq: e.Seq, hash: e.Hash}
	}
	return out, nil
}

// commit appends a prefix of entries to the chain in one transaction and
// returns how many it wrote. The transaction only succeeds if no record
// has the next sequence number or a later one and the anchor is as it was
// when the writer last saw the end of the chain, so servers sharing the
// store never fork the chain: the loser re-reads the end and chains its
// records after the winner's.
func (s *storeChain) commit(ctx context.Context, entries []Entry) (int, []encoded, error) {
	for attempt := 0; ; attempt++ {
		recs, err := chain(s.last, entries)
		if err != nil {
			return 0, nil, err
		}
		ops := make([]clientv3.Op, 0, len(recs)+1)
		for _, r := range recs {
			ops = append(ops, clientv3.OpPut(s.key(r.seq), string(r.line)))
		}
		if s.storeEmpty && s.last.seq > 0 {
			// The chain continues from records the store no longer
			// has (pruned, or known only from the file): say where it
			// continues from, as pruning does.
			b, _ := json.Marshal(anchor{Seq: s.last.seq, Hash: s.last.hash})
			ops = append(ops, clientv3.OpPut(s.anchorKey(), string(b)))
		}
		// No record may exist at or after the first slot: a slot
		// pruning emptied passes "never created" again, and a server
		// that has been idle while another appended and pruned would
		// fill it below the anchor, forking the chain. When pruning
		// emptied the store, that range is empty for every writer, so
		// the anchor must also be unchanged: every prune moves it, and
		// so does a writer continuing an empty store.
		resp, err := s.cli.Txn(ctx).
			If(
				clientv3.Compare(clientv3.CreateRevision(s.key(recs[0].seq)), "=", 0).WithRange(clientv3.GetPrefixRangeEnd(s.recPrefix())),
				clientv3.Compare(clientv3.ModRevision(s.anchorKey()), "=", s.anchorRev),
			).
			Then(ops...).Commit()
		if err != nil {
			return 0, nil, fmt.Errorf("write audit records %d-%d: %w", recs[0].seq, recs[len(recs)-1].seq, unavailable(err))
		}
		if resp.Succeeded {
			if len(ops) > len(recs) {
				s.anchorRev = resp.Header.Revision
			}
			s.last = chainHead{seq: recs[len(recs)-1].seq, hash: recs[len(recs)-1].hash}
			s.storeEmpty = false
			return len(recs), recs, nil
		}
		// The slot is taken or the anchor moved. Either an earlier
		// attempt of ours did commit but its answer was lost (its
		// anchor revision is then unknown: the next batch re-reads
		// it), another server appended, or a prune moved the anchor.
		if ok, err := s.alreadyStored(ctx, recs); err != nil {
			return 0, nil, err
		} else if ok {
			s.last = chainHead{seq: recs[len(recs)-1].seq, hash: recs[len(recs)-1].hash}
			s.storeEmpty = false
			return len(recs), recs, nil
		}
		head, empty, anchorRev, err := s.head(ctx)
		if err != nil {
			return 0, nil, err
		}
		s.anchorRev, s.storeEmpty = anchorRev, empty
		if head.seq > s.last.seq {
			s.races.Add(1)
			s.last = head
		}
		// Otherwise nobody used a seq after ours (pruning moves the
		// anchor to the last record it deletes, so it would show): the
		// anchor only moved, or the store was edited behind our back.
		// Keep our place and try again with the anchor as it is now.
		if attempt > 100 {
			return 0, nil, fmt.Errorf("%w: could not append audit records after %d attempts", v1.ErrConflict, attempt)
		}
	}
}

// alreadyStored reports whether recs are in the store byte for byte,
// which is how a retried batch learns that its first attempt committed.
func (s *storeChain) alreadyStored(ctx context.Context, recs []encoded) (bool, error) {
	resp, err := s.cli.Get(ctx, s.key(recs[0].seq), clientv3.WithRange(s.key(recs[len(recs)-1].seq+1)))
	if err != nil {
		return false, fmt.Errorf("read audit records: %w", unavailable(err))
	}
	if len(resp.Kvs) != len(recs) {
		return false, nil
	}
	for i, kv := range resp.Kvs {
		if !bytes.Equal(kv.Value, recs[i].line) {
			return false, nil
		}
	}
	return true, nil
}

// scan calls fn with the records whose seq is in [from, to] (to 0: no
// upper bound), in chain order or in reverse, page by page, all read at
// one store revision (rev 0: the current one). It returns that revision.
func (s *storeChain) scan(ctx context.Context, from, to uint64, desc bool, rev int64, fn func(seq uint64, raw []byte) (bool, error)) (int64, error) {
	start := s.key(from)
	end := clientv3.GetPrefixRangeEnd(s.recPrefix())
	if to > 0 {
		if to < from {
			return rev, nil
		}
		if to < ^uint64(0) {
			end = s.key(to + 1)
		}
	}
	const page = 500
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(page)}
		if desc {
			opts = append(opts, clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend))
		}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.cli.Get(ctx, start, opts...)
		if err != nil {
			return rev, fmt.Errorf("read audit records: %w", unavailable(err))
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			seq, err := s.seqOf(kv.Key)
			if err != nil {
				return rev, err
			}
			more, err := fn(seq, kv.Value)
			if err != nil || !more {
				return rev, err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return rev, nil
		}
		last := string(resp.Kvs[len(resp.Kvs)-1].Key)
		if desc {
			end = last
		} else {
			start = last + "\x00"
		}
	}
}

// bounds returns the seq of the oldest and newest stored records (0, 0
// when there are none).
func (s *storeChain) bounds(ctx context.Context, rev int64) (oldest, newest uint64, err error) {
	var revOpts []clientv3.OpOption
	if rev > 0 {
		revOpts = []clientv3.OpOption{clientv3.WithRev(rev)}
	}
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(s.recPrefix(), append(clientv3.WithFirstKey(), append(revOpts, clientv3.WithKeysOnly())...)...),
		clientv3.OpGet(s.recPrefix(), append(clientv3.WithLastKey(), append(revOpts, clientv3.WithKeysOnly())...)...),
	).Commit()
	if err != nil {
		return 0, 0, fmt.Errorf("read audit chain bounds: %w", unavailable(err))
	}
	first, last := resp.Responses[0].GetResponseRange().Kvs, resp.Responses[1].GetResponseRange().Kvs
	if len(first) == 0 || len(last) == 0 {
		return 0, 0, nil
	}
	if oldest, err = s.seqOf(first[0].Key); err != nil {
		return 0, 0, err
	}
	if newest, err = s.seqOf(last[0].Key); err != nil {
		return 0, 0, err
	}
	return oldest, newest, nil
}

// atOrAfter reads the first stored record with seq >= seq.
func (s *storeChain) atOrAfter(ctx context.Context, seq uint64) (uint64, Entry, bool, error) {
	resp, err := s.cli.Get(ctx, s.key(seq), clientv3.WithRange(clientv3.GetPrefixRangeEnd(s.recPrefix())), clientv3.WithLimit(1))
	if err != nil {
		return 0, Entry{}, false, fmt.Errorf("read audit record %d: %w", seq, unavailable(err))
	}
	if len(resp.Kvs) == 0 {
		return 0, Entry{}, false, nil
	}
	got, err := s.seqOf(resp.Kvs[0].Key)
	if err != nil {
		return 0, Entry{}, false, err
	}
	e, err := ParseRecord(resp.Kvs[0].Value)
	if err != nil {
		return got, Entry{}, false, fmt.Errorf("audit record %d: %w", got, err)
	}
	return got, e, true, nil
}

// clockSlack is how far out of End order two records may be: requests
// are recorded as they end, so End grows with Seq except for clock steps
// and the skew between servers sharing the store.
const clockSlack = 2 * time.Minute

// firstEndingAfter finds, by binary search over [lo, hi], a seq such that
// every record before it ended before t (given clockSlack). It returns
// hi+1 if every record did.
func (s *storeChain) firstEndingAfter(ctx context.Context, t time.Time, lo, hi uint64) (uint64, error) {
	t = t.Add(-clockSlack)
	for lo <= hi && lo > 0 {
		mid := lo + (hi-lo)/2
		seq, e, ok, err := s.atOrAfter(ctx, mid)
		if err != nil {
			if ctx.Err() != nil {
				return 0, err
			}
			// An unreadable record ends the search: everything before
			// lo is known to be old, nothing after it is.
			return lo, nil
		}
		switch {
		case !ok || seq > hi || !e.End().Before(t):
			// No record in [mid, seq) exists, so the first recent one
			// is in [lo, mid-1] or is the one at seq.
			hi = mid - 1
		default:
			lo = seq + 1
		}
	}
	return lo, nil
}

// Prune deletes the records that are older than Retention, or beyond the
// newest MaxRecords, and moves the anchor to the last record it deleted
// in the same transaction, so Verify still checks the oldest kept
// record's Prev. It runs every PruneInterval on its own; it returns how
// many records it deleted. Servers sharing the store may prune at the same
// time: each step is guarded by the anchor's revision.
func (l *Log) Prune(ctx context.Context) (int, error) {
	s := l.st
	oldest, newest, err := s.bounds(ctx, 0)
	if err != nil || newest == 0 {
		return 0, err
	}
	var target uint64 // delete every record with seq <= target
	if n := newest - oldest + 1; n > uint64(l.cfg.MaxRecords) {
		target = newest - uint64(l.cfg.MaxRecords)
	}
	first, err := s.firstEndingAfter(ctx, time.Now().Add(-l.cfg.Retention), max(oldest, target+1), newest)
	if err != nil {
		return 0, err
	}
	if first > 0 {
		target = max(target, first-1)
	}
	if target < oldest {
		return 0, nil
	}
	const chunk = 1000
	deleted := 0
	for from := oldest; from <= target; {
		to := min(from+chunk-1, target)
		// The anchor is the last record deleted; find it (there may be
		// gaps in a damaged chain) and its hash.
		resp, err := s.cli.Txn(ctx).Then(
			clientv3.OpGet(s.key(from), clientv3.WithRange(s.key(to+1)), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(1)),
			clientv3.OpGet(s.anchorKey()),
		).Commit()
		if err != nil {
			return deleted, fmt.Errorf("prune audit records: %w", unavailable(err))
		}
		last := resp.Responses[0].GetResponseRange().Kvs
		if len(last) == 0 {
			from = to + 1
			continue
		}
		lastSeq, err := s.seqOf(last[0].Key)
		if err != nil {
			return deleted, err
		}
		a := anchor{Seq: lastSeq}
		if e, err := ParseRecord(last[0].Value); err == nil {
			// A damaged record keeps its stored hash claim; if it is
			// unreadable the anchor has none, and Verify will say the
			// oldest record's Prev cannot be checked against it.
			a.Hash = e.Hash
		}
		_, anchorRev, err := decodeAnchor(resp.Responses[1].GetResponseRange().Kvs)
		if err != nil {
			// A damaged anchor is evidence; do not overwrite it.
			return deleted, fmt.Errorf("not pruning: %w", err)
		}
		b, _ := json.Marshal(a)
		tr, err := s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(s.anchorKey()), "=", anchorRev)).
			Then(
				clientv3.OpDelete(s.key(from), clientv3.WithRange(s.key(to+1))),
				clientv3.OpPut(s.anchorKey(), string(b)),
			).Commit()
		if err != nil {
			return deleted, fmt.Errorf("prune audit records %d-%d: %w", from, to, unavailable(err))
		}
		if !tr.Succeeded {
			// Another server is pruning (or a writer continued the
			// chain of an emptied store); leave it to the next run.
			return deleted, nil
		}
		deleted += int(tr.Responses[0].GetResponseDeleteRange().Deleted)
		from = to + 1
	}
	if deleted > 0 {
		l.log.Info("pruned audit records", "records", deleted, "throughSeq", target)
	}
	return deleted, nil
}
