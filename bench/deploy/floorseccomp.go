package main

import (
	"context"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/contrib/seccomp"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"

	"github.com/gantry-dev/gantry/internal/runtime"
)

// floorSeccomp is the floor with one of Gantry's secure defaults added:
// containerd's default seccomp profile, which runc compiles and loads in
// every container it creates. The difference to the floor is what that
// one option costs; the rest of the gap to the runtime driver without a
// log file is the driver's other options and its extra containerd calls.
func (r *latencyRun) floorSeccomp(ctx context.Context, cl *client.Client, id string) (directResult, error) {
	var res directResult
	res.start = time.Now()
	img, err := cl.GetImage(ctx, r.ref)
	if err != nil {
		return res, err
	}
	c, err := cl.NewContainer(ctx, id,
		client.WithSnapshotter(runtime.DefaultSnapshotter),
		client.WithNewSnapshot(id, img),
		client.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs("/bin/sleep", "3600"), seccomp.WithDefaultProfile()),
	)
	if err != nil {
		return res, err
	}
	remove := func() error {
		ctx := context.WithoutCancel(ctx)
		if t, err := c.Task(ctx, nil); err == nil {
			if _, err := t.Delete(ctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
				return err
			}
		}
		return c.Delete(ctx, client.WithSnapshotCleanup)
	}
	t, err := c.NewTask(ctx, cio.NullIO)
	if err != nil {
		remove()
		return res, err
	}
	if err := t.Start(ctx); err != nil {
		remove()
		return res, err
	}
	res.done = time.Now()
	res.ctr = r.ev.get(id)
	return res, remove()
}
