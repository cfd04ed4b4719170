package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"time"

	ctrd "github.com/containerd/containerd/v2/client"

	"github.com/gantry-dev/gantry/internal/runtime"
)

// probeImageChecks shows how the check "is this image present and
// unpacked" behaves when n instances of one image start together, as in a
// scale-up: every agent worker calls runtime.Driver.EnsureImage twice
// (before attaching the network and again inside Create), and the driver
// holds a per-image lock for the whole check, so n starts make 2n checks
// in a row. It times n checks one after another, n at once through the
// driver, and n at once with the same containerd calls made directly
// (no lock), on the node's containerd with the image present.
func probeImageChecks(ctx context.Context, c *cluster, ref string, n int, w io.Writer) error {
	drv, err := runtime.New(ctx, runtime.Config{Address: c.containerdSocket()}, nil)
	if err != nil {
		return err
	}
	defer drv.Close()
	cl, err := ctrd.New(c.containerdSocket(), ctrd.WithDefaultNamespace(runtime.DefaultNamespace))
	if err != nil {
		return err
	}
	defer cl.Close()
	name, err := runtime.NormalizeRef(ref)
	if err != nil {
		return err
	}
	direct := func(ctx context.Context) error {
		img, err := cl.GetImage(ctx, name)
		if err != nil {
			return err
		}
		if _, err := img.IsUnpacked(ctx, runtime.DefaultSnapshotter); err != nil {
			return err
		}
		_, err = img.Spec(ctx)
		return err
	}
	viaDriver := func(ctx context.Context) error {
		_, err := drv.EnsureImage(ctx, ref)
		return err
	}
	parallel := func(check func(context.Context) error) (time.Duration, error) {
		var wg sync.WaitGroup
		errs := make([]error, n)
		start := time.Now()
		for i := range n {
			wg.Go(func() { errs[i] = check(ctx) })
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return 0, err
			}
		}
		return time.Since(start), nil
	}
	start := time.Now()
	for range n {
		if err := viaDriver(ctx); err != nil {
			return err
		}
	}
	seq := time.Since(start)
	par, err := parallel(viaDriver)
	if err != nil {
		return err
	}
	raw, err := parallel(direct)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "image check, %d times, image present (load %s): one after another %s; at once via Driver.EnsureImage %s; at once without the per-image lock %s\n",
		n, loadAvg(), seq.Round(time.Millisecond), par.Round(time.Millisecond), raw.Round(time.Millisecond))
	return nil
}

// burstFloor starts n containers of ref at once straight through
// containerd's client (runtime.BaselineCreateStart) and through Gantry's
// runtime driver as the agent configures it (log driver, secure
// defaults; no network, no API), and reports how long until all ran:
// what containerd, runc and this machine allow for a burst, without the
// control plane and the agent. Everything is removed after.
func burstFloor(ctx context.Context, c *cluster, ev *ctrEvents, ref, logDriver string, n int, w io.Writer) error {
	drv, err := runtime.New(ctx, runtime.Config{Address: c.containerdSocket(), LogDriver: []string{logDriver}}, nil)
	if err != nil {
		return err
	}
	defer drv.Close()
	name, err := runtime.NormalizeRef(ref)
	if err != nil {
		return err
	}
	run := func(label string, start func(id string) (func() error, error)) error {
		var wg sync.WaitGroup
		removes := make([]func() error, n)
		errs := make([]error, n)
		began := time.Now()
		for i := range n {
			wg.Go(func() { removes[i], errs[i] = start(fmt.Sprintf("burst-%s-%03d", label, i)) })
		}
		wg.Wait()
		took := time.Since(began)
		var firstErr error
		for i := range n {
			if errs[i] != nil && firstErr == nil {
				firstErr = errs[i]
			}
			if removes[i] != nil {
				if err := removes[i](); err != nil && firstErr == nil {
					firstErr = err
				}
			}
		}
		if firstErr != nil {
			return fmt.Errorf("burst %s: %w", label, firstErr)
		}
		// When each container's snapshot was prepared and its task
		// started, from the burst's start: a lock that serializes the
		// steps before the snapshot shows as snapshots spread evenly
		// over the burst.
		var snap, started []time.Duration
		for i := range n {
			t := ev.get(fmt.Sprintf("burst-%s-%03d", label, i))
			if !t.snapshot.IsZero() {
				snap = append(snap, t.snapshot.Sub(began))
			}
			if !t.taskStart.IsZero() {
				started = append(started, t.taskStart.Sub(began))
			}
		}
		sd, td := summarize(snap), summarize(started)
		fmt.Fprintf(w, "burst without Gantry, %d containers at once, %s: all started after %s; snapshot prepared p50 %s max %s ms, task started p50 %s max %s ms (load %s)\n",
			n, label, took.Round(time.Millisecond), ms(sd.p50), ms(sd.max), ms(td.p50), ms(td.max), loadAvg())
		return nil
	}
	if err := run("floor", func(id string) (func() error, error) {
		rm, err := drv.BaselineCreateStart(ctx, name, id, "/bin/sleep", "3600")
		if err != nil {
			return nil, err
		}
		return func() error { return rm(context.WithoutCancel(ctx)) }, nil
	}); err != nil {
		return err
	}
	return run("driver", func(id string) (func() error, error) {
		rm := func() error {
			if err := drv.Stop(context.WithoutCancel(ctx), id, 0); err != nil {
				return err
			}
			return drv.Remove(context.WithoutCancel(ctx), id)
		}
		err := drv.Create(ctx, &runtime.ContainerSpec{
			ID: id, Image: ref, Command: []string{"/bin/sleep", "3600"},
			Resources: runtime.Resources{CPURequestMillis: 10, MemoryLimitBytes: 16 << 20},
			LogPath:   filepath.Join(c.dir, "bench-logs", id+".log"),
		})
		if err != nil {
			return nil, err
		}
		if _, err := drv.Start(ctx, id); err != nil {
			return rm, err
		}
		return rm, nil
	})
}
