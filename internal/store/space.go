package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// DefaultQuotaBytes is etcd's own default backend quota, which the embedded
// etcd keeps unless EmbedConfig.QuotaBytes says otherwise.
const DefaultQuotaBytes = 2 << 30

// KeepSpace looks after the embedded etcd's disk space every interval until
// ctx ends. etcd never gives back the pages that compaction frees; it only
// reuses them, and when its file reaches the quota it raises the NOSPACE
// alarm and refuses every write (deletes and reads still work) until
// someone reclaims space and disarms the alarm. KeepSpace is that someone:
//
//   - Without the alarm, it defragments when the file is at least half the
//     quota and at least half of it is free pages, so that a burst of
//     writes long since compacted does not bring the file near the quota.
//   - Under the alarm, it compacts the history up to the current revision
//     (watchers that were behind resume with a fresh list, as after any
//     compaction), defragments, and disarms the alarm once the data in use
//     is under 80 % of the quota. If it is not, the alarm stays and each
//     round logs what is in use: deleting objects frees space for the next
//     round.
//
// Defragmenting holds etcd's writes (and the reads behind them) for as long
// as it takes to copy the data in use, about a second per 100 MiB here.
func (e *Embedded) KeepSpace(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := e.spaceRound(ctx); err != nil && ctx.Err() == nil {
			e.log.Warn("store space maintenance", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// spaceRound says what one round of keepSpace did.
type spaceRound struct {
	Alarmed    bool  // the NOSPACE alarm was raised when the round began
	Compacted  bool  // the history was compacted to the current revision
	Defragged  bool  // the backend file was defragmented
	Disarmed   bool  // the alarm was disarmed: writes are accepted again
	SizeBytes  int64 // the backend file's size at the end of the round
	InUseBytes int64 // the part of it holding data
	QuotaBytes int64
	Revision   int64
	FreedBytes int64 // how much the file shrank in this round
}

func (e *Embedded) spaceRound(ctx context.Context) (spaceRound, error) {
	r := spaceRound{QuotaBytes: e.quota}
	alarms, err := e.Client.AlarmList(ctx)
	if err != nil {
		return r, fmt.Errorf("list etcd alarms: %w", err)
	}
	var nospace []*pb.AlarmMember
	for _, a := range alarms.Alarms {
		if a.Alarm == pb.AlarmType_NOSPACE {
			nospace = append(nospace, a)
		}
	}
	r.Alarmed = len(nospace) > 0
	st, err := e.Client.Status(ctx, e.endpoint)
	if err != nil {
		return r, fmt.Errorf("etcd status: %w", err)
	}
	before := st.DbSize
	r.SizeBytes, r.InUseBytes, r.Revision = st.DbSize, st.DbSizeInUse, st.Header.Revision

	if !r.Alarmed {
		if st.DbSize < e.quota/2 || st.DbSizeInUse > st.DbSize/2 {
			return r, nil
		}
		if err := e.defrag(ctx, &r); err != nil {
			return r, err
		}
		r.FreedBytes = before - r.SizeBytes
		e.log.Info("store defragmented", "freedMiB", r.FreedBytes>>20, "sizeMiB", r.SizeBytes>>20, "quotaMiB", e.quota>>20)
		return r, nil
	}

	// Compaction and defragmentation are among what etcd still does
	// under the alarm.
	if _, err := e.Client.Compact(ctx, st.Header.Revision, clientv3.WithCompactPhysical()); err != nil && !errors.Is(err, rpctypes.ErrCompacted) {
		return r, fmt.Errorf("compact the store to revision %d: %w", st.Header.Revision, err)
	}
	r.Compacted = true
	if err := e.defrag(ctx, &r); err != nil {
		return r, err
	}
	r.FreedBytes = before - r.SizeBytes
	if !mayDisarm(r.InUseBytes, e.quota) {
		e.log.Error("the store is full: writes are refused until objects are deleted",
			"inUseMiB", r.InUseBytes>>20, "quotaMiB", e.quota>>20)
		return r, nil
	}
	for _, a := range nospace {
		if _, err := e.Client.AlarmDisarm(ctx, (*clientv3.AlarmMember)(a)); err != nil {
			return r, fmt.Errorf("disarm etcd's NOSPACE alarm: %w", err)
		}
	}
	r.Disarmed = true
	e.log.Warn("the store was full; space reclaimed, writes accepted again",
		"freedMiB", r.FreedBytes>>20, "inUseMiB", r.InUseBytes>>20, "quotaMiB", e.quota>>20)
	return r, nil
}

// mayDisarm reports whether the NOSPACE alarm may be lifted with inUse of
// quota bytes holding data: below 80 %, so that writes have room before
// the next alarm.
func mayDisarm(inUse, quota int64) bool { return inUse < quota/10*8 }

func (e *Embedded) defrag(ctx context.Context, r *spaceRound) error {
	if _, err := e.Client.Defragment(ctx, e.endpoint); err != nil {
		return fmt.Errorf("defragment the store: %w", err)
	}
	r.Defragged = true
	st, err := e.Client.Status(ctx, e.endpoint)
	if err != nil {
		return fmt.Errorf("etcd status: %w", err)
	}
	r.SizeBytes, r.InUseBytes = st.DbSize, st.DbSizeInUse
	return nil
}

// noSpace reports whether etcd refused a write because its NOSPACE alarm
// is raised.
func noSpace(err error) bool {
	return errors.Is(err, rpctypes.ErrNoSpace) || errors.Is(err, rpctypes.ErrGRPCNoSpace)
}
