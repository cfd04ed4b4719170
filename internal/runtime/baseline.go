package runtime

import (
	"context"
	"fmt"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
)

// BaselineCreateStart creates and starts a container of ref (already
// pulled) the shortest way containerd's client allows: containerd's
// default spec, no log driver, no extra security options. It is the floor
// that Gantry's own create and start (and so its deploy latency) is
// measured against. remove kills and deletes the container and its
// snapshot.
func (d *Driver) BaselineCreateStart(ctx context.Context, ref, id string, args ...string) (remove func(context.Context) error, err error) {
	ctx = d.ns(ctx)
	img, err := d.client.GetImage(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("baseline %s: %w", id, kindOf(err))
	}
	specOpts := []oci.SpecOpts{oci.WithImageConfig(img)}
	if len(args) > 0 {
		specOpts = append(specOpts, oci.WithProcessArgs(args...))
	}
	c, err := d.client.NewContainer(ctx, id,
		client.WithSnapshotter(d.cfg.Snapshotter),
		client.WithNewSnapshot(id, img),
		client.WithNewSpec(specOpts...),
	)
	if err != nil {
		return nil, fmt.Errorf("baseline %s: %w", id, kindOf(err))
	}
	remove = func(ctx context.Context) error {
		ctx = d.ns(ctx)
		if t, err := c.Task(ctx, nil); err == nil {
			if _, err := t.Delete(ctx, client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
				return err
			}
		}
		return c.Delete(ctx, client.WithSnapshotCleanup)
	}
	t, err := c.NewTask(ctx, cio.NullIO)
	if err != nil {
		_ = remove(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("baseline %s: %w", id, kindOf(err))
	}
	if err := t.Start(ctx); err != nil {
		_ = remove(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("baseline %s: %w", id, kindOf(err))
	}
	return remove, nil
}
