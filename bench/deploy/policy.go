package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/gantry-dev/gantry/internal/clusterslot"
	"github.com/gantry-dev/gantry/internal/network"
)

// runPolicy times network.SetPolicy, which every agent worker runs (one
// at a time, under the agent's policy lock) before its container starts,
// for node populations of growing size. During a burst of N starts the
// k-th worker waits for up to k of these in a row, so the sum over k is
// what the last instance of a burst can queue behind.
func runPolicy(ctx context.Context, opts options, w io.Writer) (err error) {
	n, release, err := clusterslot.Claim(os.Getpid())
	if err != nil {
		return err
	}
	defer release()
	dir, err := os.MkdirTemp("", "gantry-bench-policy-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	nw, err := network.New(network.Config{
		BridgeName: fmt.Sprintf("gte%d", n), Subnet: fmt.Sprintf("10.%d.0.0/24", 100+n), ClusterCIDR: fmt.Sprintf("10.%d.0.0/16", 100+n),
		DataDir: filepath.Join(dir, "net"), NetNSDir: filepath.Join(dir, "netns"),
	}, nil)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := nw.Cleanup(context.WithoutCancel(ctx)); cerr != nil && err == nil {
			err = cerr
		}
	}()
	sizes := []int{1, 10, 50, 100, 200}
	const reps = 10
	fmt.Fprintf(w, "\nnetwork.SetPolicy on bridge gte%d (one iptables-restore; iptables -S only on the first and after network.PolicyRecheck), %d runs per size, ms (load %s)\n", n, reps, loadAvg())
	rows := [][]string{{"members", "min", "p50", "p90", "max"}}
	var p50s []time.Duration
	for _, size := range sizes {
		members := make([]network.Member, size)
		for i := range members {
			members[i] = network.Member{IP: net.IPv4(10, byte(100+n), byte(1+i/250), byte(2+i%250)), Namespace: fmt.Sprintf("ns%d", i%5)}
		}
		var ds []time.Duration
		for range reps {
			start := time.Now()
			if err := nw.SetPolicy(ctx, members); err != nil {
				return err
			}
			ds = append(ds, time.Since(start))
		}
		d := summarize(ds)
		p50s = append(p50s, d.p50)
		rows = append(rows, []string{fmt.Sprint(size), ms(d.min), ms(d.p50), ms(d.p90), ms(d.max)})
	}
	table(w, rows)
	// Interpolate between the measured sizes for the sum over a burst of
	// 100 starts.
	var total time.Duration
	for k := 1; k <= 100; k++ {
		total += interpolate(sizes, p50s, k)
	}
	fmt.Fprintf(w, "sum of SetPolicy(k) for k = 1..100 (p50, interpolated): %s: the policy work a burst of 100 starts serializes on\n", total.Round(time.Millisecond))
	return nil
}

func interpolate(xs []int, ys []time.Duration, x int) time.Duration {
	if x <= xs[0] {
		return ys[0]
	}
	for i := 1; i < len(xs); i++ {
		if x <= xs[i] {
			f := float64(x-xs[i-1]) / float64(xs[i]-xs[i-1])
			return ys[i-1] + time.Duration(f*float64(ys[i]-ys[i-1]))
		}
	}
	return ys[len(ys)-1]
}
