package metrics

import (
	"testing"
	"time"
)

// A node whose clock is off stamps its samples with it; the server
// restamps such a report to its own clock, moving every sample by the
// same amount.
func TestReportRestamp(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	var zero time.Time
	for _, tc := range []struct {
		name      string
		node      time.Time
		instances []time.Time
		want      []time.Time // node's, then the instances'
	}{
		{"the node's clock is ahead", now.Add(5 * time.Minute), []time.Time{now.Add(5 * time.Minute), now.Add(5*time.Minute - time.Second)},
			[]time.Time{now, now, now.Add(-time.Second)}},
		{"the node's clock is behind", now.Add(-time.Hour), []time.Time{now.Add(-time.Hour)}, []time.Time{now, now}},
		{"no node time: the newest instance's counts", zero, []time.Time{now.Add(-3 * time.Second), now.Add(-2 * time.Second)},
			[]time.Time{now, now.Add(-time.Second), now}},
		{"no times at all", zero, []time.Time{zero}, []time.Time{now, now}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Report{Node: NodeSample{Node: "n1", Point: Point{Time: tc.node}}}
			for _, at := range tc.instances {
				r.Instances = append(r.Instances, InstanceSample{Namespace: "ns", Name: "i", Point: Point{Time: at}})
			}
			r.Restamp(now)
			got := []time.Time{r.Node.Time}
			for _, s := range r.Instances {
				got = append(got, s.Time)
			}
			for i := range tc.want {
				if !got[i].Equal(tc.want[i]) {
					t.Errorf("times after Restamp = %v, want %v", got, tc.want)
					break
				}
			}
			if !r.Time().Equal(now) {
				t.Errorf("report's Time after Restamp = %v, want %v", r.Time(), now)
			}
		})
	}
}

func TestReportSkewed(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		off  time.Duration
		want bool
	}{
		{0, false},
		{time.Second, false},
		{-time.Second, false},
		{time.Second + time.Millisecond, true},
		{-time.Second - time.Millisecond, true},
		{-10 * time.Minute, true},
	} {
		r := Report{Node: NodeSample{Point: Point{Time: now.Add(tc.off)}}}
		if got := r.Skewed(now); got != tc.want {
			t.Errorf("a report %s off: Skewed = %v, want %v", tc.off, got, tc.want)
		}
	}
}
