package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
)

// Config configures the audit log. Zero fields take DefaultConfig's values.
type Config struct {
	// Store persists the chain. Required.
	Store *store.Store
	// Prefix is the etcd key prefix of the audit keys; by default the
	// store's prefix followed by "audit/".
	Prefix string
	// Dir holds the JSON-lines files (audit.jsonl and its rotations).
	// Empty: no file is written.
	Dir string
	// MaxFileSize rotates audit.jsonl once it would grow beyond it.
	MaxFileSize int64
	// MaxFiles is how many rotated files are kept next to audit.jsonl; the
	// oldest is deleted beyond it.
	MaxFiles int
	// Retention prunes records from the store once they are older than it
	// (by the time the request ended). Files are bounded by MaxFiles only.
	Retention time.Duration
	// MaxRecords prunes the oldest records from the store beyond this
	// many, whatever their age, so a burst cannot fill etcd's quota.
	MaxRecords int
	// PruneInterval is how often pruning runs.
	PruneInterval time.Duration
	// MaxPending bounds the records waiting in memory to be written.
	MaxPending int
	// BlockTimeout is how long Record waits for room when MaxPending
	// records are waiting (the store is down or slow) before it drops
	// the record and counts it in Stats.Dropped.
	BlockTimeout time.Duration
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		MaxFileSize:   100 << 20,
		MaxFiles:      10,
		Retention:     7 * 24 * time.Hour,
		MaxRecords:    250_000,
		PruneInterval: time.Minute,
		MaxPending:    100_000,
		BlockTimeout:  20 * time.Millisecond,
	}
}

func (c *Config) setDefaults() {
	d := DefaultConfig()
	if c.MaxFileSize <= 0 {
		c.MaxFileSize = d.MaxFileSize
	}
	if c.MaxFiles <= 0 {
		c.MaxFiles = d.MaxFiles
	}
	if c.Retention <= 0 {
		c.Retention = d.Retention
	}
	if c.MaxRecords <= 0 {
		c.MaxRecords = d.MaxRecords
	}
	if c.PruneInterval <= 0 {
		c.PruneInterval = d.PruneInterval
	}
	if c.MaxPending <= 0 {
		c.MaxPending = d.MaxPending
	}
	if c.BlockTimeout <= 0 {
		c.BlockTimeout = d.BlockTimeout
	}
	if c.Prefix == "" {
		// The store keeps its prefix to itself; the key of a made-up
		// cluster-scoped kind named "audit" is exactly "<prefix>audit/".
		// No real kind can be called that, as plurals end in "s".
		c.Prefix = c.Store.Key(&v1.KindInfo{Plural: "audit"}, "", "")
	}
	if !strings.HasSuffix(c.Prefix, "/") {
		c.Prefix += "/"
	}
}

// Stats counts what the log has done since it started.
type Stats struct {
	Recorded  uint64 // Record calls accepted into the queue
	Persisted uint64 // records committed to the store
	Dropped   uint64 // records lost: queue full, or not written by Close's deadline
	Pending   int    // records waiting to be written
	LastSeq   uint64 // last record committed
	// Races counts batches that another server sharing the store got
	// ahead of; they were chained again after its records.
	Races uint64
}

// Log is the hash-chained audit log. Record is safe for concurrent use
// and cheap; one goroutine, started by New and stopped by Close, assigns
// sequence numbers and hashes and writes records in batches.
type Log struct {
	cfg Config
	log *slog.Logger
	st  *storeChain
	fw  *fileWriter // nil without Dir

	mu       sync.Mutex
	queue    []Entry
	closed   bool
	drained  chan struct{} // closed (and replaced) when the writer takes the queue
	progress chan struct{} // closed (and replaced) when records are persisted
	enq      uint64        // records ever queued
	done     uint64        // records persisted or given up on, in queue order
	stats    Stats
	lastDrop time.Time

	wake   chan struct{}
	stop   chan struct{}
	exited chan struct{}
	runCtx context.Context
	cancel context.CancelFunc
}

// New opens the audit log: it finds the end of the chain in the store and
// in the file, so the chain continues where the last run stopped, and
// starts the writer. Close stops it.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Log, error) {
	if cfg.Store == nil {
		return nil, fmt.Errorf("%w: audit needs a store", v1.ErrInvalid)
	}
	cfg.setDefaults()
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "audit")
	l := &Log{
		cfg: cfg, log: log,
		st:       &storeChain{cli: cfg.Store.Client(), prefix: cfg.Prefix},
		drained:  make(chan struct{}),
		progress: make(chan struct{}),
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		exited:   make(chan struct{}),
	}
	head, empty, anchorRev, err := l.st.head(ctx)
	if err != nil {
		return nil, err
	}
	l.st.storeEmpty, l.st.anchorRev = empty, anchorRev
	if cfg.Dir != "" {
		fw, err := openFileWriter(cfg.Dir, cfg.MaxFileSize, cfg.MaxFiles, log)
		if err != nil {
			return nil, err
		}
		l.fw = fw
		switch {
		case fw.lastSeq > head.seq:
			// The store lost records the file has (restored from an
			// older backup, or wiped). Continue after the file so no
			// sequence number is used twice; Verify will report the
			// gap in the store unless the store is empty.
			log.Warn("audit file is ahead of the store; continuing the chain from the file",
				"fileSeq", fw.lastSeq, "storeSeq", head.seq)
			head = chainHead{seq: fw.lastSeq, hash: fw.lastHash}
		case fw.lastSeq > 0 && fw.lastSeq < head.seq:
			if err := l.backfill(ctx, head.seq+1); err != nil {
				log.Warn("could not copy missing records from the store to the audit file", "err", err)
			}
		}
	}
	l.st.last = head
	l.stats.LastSeq = head.seq
	l.runCtx, l.cancel = context.WithCancel(context.Background())
	go l.run()
	return l, nil
}

// Record queues e to be appended to the chain. It returns at once unless
// MaxPending records are already waiting, in which case it waits up to
// BlockTimeout for room and then drops the record (counted in Stats and
// logged). It never fails the request: ctx is not used to cancel, since a
// request whose client went away must still be recorded.
//
// Record sets Time to now when it is zero, and ignores Seq, Prev and Hash.
func (l *Log) Record(ctx context.Context, e Entry) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	var timer *time.Timer
	for {
		l.mu.Lock()
		if l.closed {
			l.dropLocked("audit log is closed")
			l.mu.Unlock()
			return
		}
		if len(l.queue) < l.cfg.MaxPending {
			l.queue = append(l.queue, e)
			l.enq++
			l.stats.Recorded++
			l.mu.Unlock()
			select {
			case l.wake <- struct{}{}:
			default:
			}
			return
		}
		drained := l.drained
		l.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(l.cfg.BlockTimeout)
			defer timer.Stop()
		}
		select {
		case <-drained:
		case <-timer.C:
			l.mu.Lock()
			l.dropLocked("audit queue full: the store is not keeping up")
			l.mu.Unlock()
			return
		}
	}
}

// dropLocked counts a lost record and logs at most every 10 seconds.
func (l *Log) dropLocked(why string) {
	l.stats.Dropped++
	if now := time.Now(); now.Sub(l.lastDrop) > 10*time.Second {
		l.lastDrop = now
		l.log.Error("audit record dropped", "reason", why, "droppedTotal", l.stats.Dropped)
	}
}

// Flush waits until every record queued before the call is in the store
// (and the file), or ctx ends.
func (l *Log) Flush(ctx context.Context) error {
	l.mu.Lock()
	target := l.enq
	for l.done < target {
		ch := l.progress
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("flush audit log: %w", ctx.Err())
		case <-l.exited:
			l.mu.Lock()
			if l.done < target {
				l.mu.Unlock()
				return errors.New("flush audit log: the log is closed")
			}
			l.mu.Unlock()
			return nil
		}
		l.mu.Lock()
	}
	l.mu.Unlock()
	return nil
}

// Close stops accepting records, writes the ones still queued and stops
// the writer. If ctx ends first (the store is unreachable), the records
// not yet written are lost and Close says how many.
func (l *Log) Close(ctx context.Context) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		<-l.exited
		return nil
	}
	l.closed = true
	droppedBefore := l.stats.Dropped
	l.mu.Unlock()
	close(l.stop)
	select {
	case <-l.exited:
	case <-ctx.Done():
		l.cancel()
		<-l.exited
	}
	l.cancel()
	var errs []error
	if l.fw != nil {
		if err := l.fw.close(); err != nil {
			errs = append(errs, err)
		}
	}
	l.mu.Lock()
	l.stats.Dropped += uint64(len(l.queue))
	l.queue = nil
	lost := l.stats.Dropped - droppedBefore
	l.mu.Unlock()
	if lost > 0 {
		errs = append(errs, fmt.Errorf("close audit log: %d records were not written before the deadline", lost))
	}
	return errors.Join(errs...)
}

// Stats returns the counters.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.stats
	s.Pending = len(l.queue)
	s.Races = l.st.races.Load()
	return s
}

// take hands the whole queue to the writer.
func (l *Log) take() []Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	q := l.queue
	if len(q) == 0 {
		return nil
	}
	l.queue = make([]Entry, 0, min(cap(q), 1024))
	close(l.drained)
	l.drained = make(chan struct{})
	return q
}

// finished marks n more queued records as done (written, or lost when
// Close gave up) and wakes Flush callers.
func (l *Log) finished(n int, persisted bool, lastSeq uint64) {
	l.mu.Lock()
	l.done += uint64(n)
	if persisted {
		l.stats.Persisted += uint64(n)
		l.stats.LastSeq = lastSeq
	} else {
		l.stats.Dropped += uint64(n)
	}
	close(l.progress)
	l.progress = make(chan struct{})
	l.mu.Unlock()
}

// run is the writer: the only goroutine that touches the chain head and
// the file.
func (l *Log) run() {
	defer close(l.exited)
	prune := time.NewTicker(l.cfg.PruneInterval)
	defer prune.Stop()
	for {
		if batch := l.take(); len(batch) > 0 {
			l.persist(batch)
			continue
		}
		select {
		case <-l.wake:
		case <-prune.C:
			if _, err := l.Prune(l.runCtx); err != nil && l.runCtx.Err() == nil {
				l.log.Warn("audit prune failed; will retry", "err", err)
			}
		case <-l.stop:
			if batch := l.take(); len(batch) > 0 {
				l.persist(batch)
				continue
			}
			return
		}
	}
}

// persist writes entries in order, batch by batch, retrying while the
// store is unavailable until Close gives up.
func (l *Log) persist(entries []Entry) {
	backoff := 50 * time.Millisecond
	failing := false
	for len(entries) > 0 {
		n, recs, err := l.st.commit(l.runCtx, entries)
		if err != nil && !retryable(err) {
			// Not a store outage: retrying cannot help, and waiting
			// would hold up every record behind these.
			l.finished(len(entries), false, 0)
			l.log.Error("audit records lost: they cannot be written", "records", len(entries), "err", err)
			return
		}
		if err != nil {
			if l.runCtx.Err() != nil {
				l.finished(len(entries), false, 0)
				l.log.Error("audit records lost: the store did not take them before shutdown", "records", len(entries), "err", err)
				return
			}
			if !failing {
				l.log.Warn("cannot write audit records; retrying", "pending", len(entries), "err", err)
				failing = true
			}
			select {
			case <-time.After(backoff):
			case <-l.runCtx.Done():
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		if failing {
			l.log.Info("audit records are being written again")
			failing = false
			backoff = 50 * time.Millisecond
		}
		if l.fw != nil {
			l.appendFile(recs)
		}
		entries = entries[n:]
		l.finished(n, true, recs[len(recs)-1].seq)
	}
}

func retryable(err error) bool {
	return errors.Is(err, v1.ErrUnavailable) || errors.Is(err, v1.ErrConflict) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// appendFile writes committed records to the file, first copying from the
// store any records the file is missing (written by another server, or
// lost to an earlier write error), so that the file is one unbroken chain.
func (l *Log) appendFile(recs []encoded) {
	first := recs[0].seq
	if l.fw.lastSeq > 0 && l.fw.lastSeq+1 < first {
		ctx, cancel := context.WithTimeout(l.runCtx, 30*time.Second)
		err := l.backfill(ctx, first)
		cancel()
		if err != nil {
			l.log.Warn("audit file is missing records it could not copy from the store", "from", l.fw.lastSeq+1, "to", first-1, "err", err)
		}
	}
	if err := l.fw.append(recs); err != nil {
		l.log.Error("cannot append to the audit file; the store still has the records", "err", err, "from", first)
	}
}

// backfill copies records from the file's last seq up to (not including)
// until from the store to the file.
func (l *Log) backfill(ctx context.Context, until uint64) error {
	var batch []encoded
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := l.fw.append(batch)
		batch = batch[:0]
		return err
	}
	_, err := l.st.scan(ctx, l.fw.lastSeq+1, until-1, false, 0, func(seq uint64, raw []byte) (bool, error) {
		e, err := ParseRecord(raw)
		if err != nil {
			return false, fmt.Errorf("record %d in the store: %w", seq, err)
		}
		batch = append(batch, encoded{seq: seq, hash: e.Hash, line: append([]byte(nil), raw...)})
		if len(batch) >= 500 {
			return true, flush()
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	return flush()
}
