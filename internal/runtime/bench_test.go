package runtime

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkCreateStart measures creating and starting a busybox container
// straight through containerd's client with containerd's defaults: the
// floor under Gantry's deploy latency. BenchmarkDriverCreateStart does the
// same through the Driver (secure defaults, limits, log driver), so the
// difference is what Gantry's runtime layer costs.
func BenchmarkCreateStart(b *testing.B) {
	e := testEnv(b)
	ctx := context.Background()
	info, err := e.driver.EnsureImage(ctx, e.busybox)
	if err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		remove, err := e.driver.BaselineCreateStart(ctx, info.Ref, fmt.Sprintf("floor-%d-%s", i, randomHex(3)), "sleep", "600")
		if err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		b.StopTimer()
		if err := remove(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "ms/create+start")
}

func BenchmarkDriverCreateStart(b *testing.B) {
	e := testEnv(b)
	ctx := context.Background()
	if _, err := e.driver.EnsureImage(ctx, e.busybox); err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		id := fmt.Sprintf("bench-%d-%s", i, randomHex(3))
		start := time.Now()
		err := e.driver.Create(ctx, &ContainerSpec{
			ID: id, Image: e.busybox, Command: []string{"sleep", "600"},
			LogPath: filepath.Join(e.dir, "logs", "bench.log"),
		})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.driver.Start(ctx, id); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		b.StopTimer()
		if err := e.driver.Remove(ctx, id); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "ms/create+start")
}
