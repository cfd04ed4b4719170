package runtime

import (
	"context"
	"fmt"
	"time"

	cgroup1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	cgroup2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/typeurl/v2"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// Stats is a sample of a running container's cgroup counters.
type Stats struct {
	At            time.Time
	CPUUsageNanos uint64 // cumulative CPU time
	// MemoryUsageBytes counts the page cache too; MemoryWorkingSetBytes
	// leaves out inactive file pages, which the kernel reclaims first
	// (what the OOM killer and `kubectl top` look at).
	MemoryUsageBytes      uint64
	MemoryWorkingSetBytes uint64
	MemoryLimitBytes      uint64
	Pids                  uint64
	PidsLimit             uint64
}

// Stats samples the cgroup of the container's current run, on cgroup v1
// or v2 hosts alike.
func (d *Driver) Stats(ctx context.Context, id string) (Stats, error) {
	ctx = d.ns(ctx)
	c, err := d.client.LoadContainer(ctx, id)
	if err != nil {
		return Stats{}, fmt.Errorf("stats of %s: %w", id, kindOf(err))
	}
	t, err := c.Task(ctx, nil)
	if err != nil {
		return Stats{}, fmt.Errorf("stats of %s: not running: %w", id, kindOf(err))
	}
	m, err := t.Metrics(ctx)
	if err != nil {
		return Stats{}, fmt.Errorf("stats of %s: %w", id, kindOf(err))
	}
	data, err := typeurl.UnmarshalAny(m.Data)
	if err != nil {
		return Stats{}, fmt.Errorf("stats of %s: decode metrics: %w", id, err)
	}
	s := Stats{At: time.Now()}
	if m.Timestamp != nil {
		s.At = m.Timestamp.AsTime()
	}
	switch v := data.(type) {
	case *cgroup1.Metrics:
		if v.CPU != nil && v.CPU.Usage != nil {
			s.CPUUsageNanos = v.CPU.Usage.Total
		}
		if v.Memory != nil && v.Memory.Usage != nil {
			s.MemoryUsageBytes = v.Memory.Usage.Usage
			s.MemoryLimitBytes = v.Memory.Usage.Limit
			s.MemoryWorkingSetBytes = workingSet(v.Memory.Usage.Usage, v.Memory.TotalInactiveFile)
		}
		if v.Pids != nil {
			s.Pids, s.PidsLimit = v.Pids.Current, v.Pids.Limit
		}
	case *cgroup2.Metrics:
		if v.CPU != nil {
			s.CPUUsageNanos = v.CPU.UsageUsec * 1000
		}
		if v.Memory != nil {
			s.MemoryUsageBytes = v.Memory.Usage
			s.MemoryLimitBytes = v.Memory.UsageLimit
			s.MemoryWorkingSetBytes = workingSet(v.Memory.Usage, v.Memory.InactiveFile)
		}
		if v.Pids != nil {
			s.Pids, s.PidsLimit = v.Pids.Current, v.Pids.Limit
		}
	default:
		return Stats{}, fmt.Errorf("stats of %s: metrics of type %T: %w", id, data, v1.ErrUnsupported)
	}
	return s, nil
}

func workingSet(usage, inactiveFile uint64) uint64 {
	if inactiveFile > usage {
		return 0
	}
	return usage - inactiveFile
}
