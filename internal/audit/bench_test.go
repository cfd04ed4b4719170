package audit

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// BenchmarkRecord measures what auditing costs an API request and how
// many records per second the log sustains into a real embedded etcd
// (fsync on every commit) and a JSON-lines file (synced every batch).
//
//	go test ./internal/audit -run '^$' -bench BenchmarkRecord -benchtime 3s
//
// Metrics: ns/op is end to end (every record committed: the run ends with
// Flush), records/s is the sustained rate, call-p50-ns and call-p99-ns are
// the time a request handler spends in Record, dropped must be 0.
func BenchmarkRecord(b *testing.B) {
	st := storetest.New(b)
	log := slog.New(slog.DiscardHandler)

	b.Run("saturated-8-handlers", func(b *testing.B) {
		l, err := New(b.Context(), Config{Store: st, Prefix: "/bench/saturated/", Dir: b.TempDir(), BlockTimeout: time.Minute}, log)
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close(context.Background())
		const handlers = 8
		lat := make([][]time.Duration, handlers)
		var wg sync.WaitGroup
		b.ResetTimer()
		start := time.Now()
		per := b.N / handlers
		for h := range handlers {
			n := per
			if h == 0 {
				n += b.N % handlers
			}
			wg.Go(func() {
				ls := make([]time.Duration, 0, n)
				for i := range n {
					e := request(i)
					t0 := time.Now()
					l.Record(context.Background(), e)
					ls = append(ls, time.Since(t0))
				}
				lat[h] = ls
			})
		}
		wg.Wait()
		if err := l.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
		elapsed := time.Since(start)
		b.StopTimer()
		report(b, slices.Concat(lat...), elapsed, l.Stats())
	})

	// The API's target load: 1,000 audited requests per second.
	b.Run("paced-1000-per-second", func(b *testing.B) {
		l, err := New(b.Context(), Config{Store: st, Prefix: "/bench/paced/", Dir: b.TempDir()}, log)
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close(context.Background())
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		start := time.Now()
		for i := 0; i < b.N; i++ {
			// An absolute schedule, so a late wake-up is made up for
			// and the average rate is exactly 1,000/s.
			time.Sleep(time.Until(start.Add(time.Duration(i) * time.Millisecond)))
			e := request(i)
			t0 := time.Now()
			l.Record(context.Background(), e)
			lat = append(lat, time.Since(t0))
		}
		if err := l.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
		elapsed := time.Since(start)
		b.StopTimer()
		report(b, lat, elapsed, l.Stats())
	})
}

func report(b *testing.B, lat []time.Duration, elapsed time.Duration, st Stats) {
	b.Helper()
	slices.Sort(lat)
	q := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Nanoseconds())
	}
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "records/s")
	b.ReportMetric(q(0.50), "call-p50-ns")
	b.ReportMetric(q(0.99), "call-p99-ns")
	b.ReportMetric(float64(st.Dropped), "dropped")
	if st.Dropped > 0 {
		b.Errorf("%d records dropped", st.Dropped)
	}
}
