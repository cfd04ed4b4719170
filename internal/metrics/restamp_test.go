package metrics

import (
	"testing"
	"time"
)

// A node whose clock is off stamps its samples with it; the server
// restamps such a report to its own clock, moving every sample by the
// same amount.
func TestClocksAlignRestampsASkewedReport(t *testing.T) {
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
			var c Clocks
			c.Align("n1", &r, now)
			got := []time.Time{r.Node.Time}
			for _, s := range r.Instances {
				got = append(got, s.Time)
			}
			for i := range tc.want {
				if !got[i].Equal(tc.want[i]) {
					t.Errorf("times after Align = %v, want %v", got, tc.want)
					break
				}
			}
			if !r.Time().Equal(now) {
				t.Errorf("report's Time after Align = %v, want %v", r.Time(), now)
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

// Restamping each report of a skewed node to its arrival carried the
// network's delays into the series: the samples of a report that came
// late and of the prompt one after it were closer than sampled, or in the
// wrong order. Align keeps the node's shift while it holds.
func TestClocksAlignKeepsANodesShift(t *testing.T) {
	var c Clocks
	agent := time.Date(2026, 1, 1, 11, 0, 0, 0, time.UTC) // an hour behind
	server := agent.Add(time.Hour)
	report := func(at time.Time) Report {
		return Report{Node: NodeSample{Node: "n1", Point: Point{Time: at}},
			Instances: []InstanceSample{{Namespace: "ns", Name: "i", Point: Point{Time: at.Add(-900 * time.Millisecond)}}}}
	}
	var last time.Time
	for i, delay := range []time.Duration{
		0,                      // sets the shift
		900 * time.Millisecond, // late
		0,                      // prompt again
		300 * time.Millisecond,
	} {
		sampled := agent.Add(time.Duration(i) * time.Second)
		r := report(sampled)
		by := c.Align("n1", &r, server.Add(time.Duration(i)*time.Second+delay))
		if by != time.Hour {
			t.Fatalf("report %d moved by %v, want the node's shift of %v", i, by, time.Hour)
		}
		got := r.Instances[0].Time
		if !got.After(last) {
			t.Fatalf("report %d: instance sample at %v, not after the previous one at %v", i, got, last)
		}
		if want := sampled.Add(-900 * time.Millisecond).Add(time.Hour); !got.Equal(want) {
			t.Fatalf("report %d: instance sample at %v, want %v: a second after the previous, as sampled", i, got, want)
		}
		last = got
	}

	// A shift that would leave a report more than maxSkew off is taken
	// anew: the node's clock was stepped.
	r := report(agent.Add(10 * time.Minute))
	now := server.Add(5 * time.Second)
	if by := c.Align("n1", &r, now); by != now.Sub(agent.Add(10*time.Minute)) || !r.Time().Equal(now) {
		t.Fatalf("after a clock step: moved by %v to %v, want to %v", by, r.Time(), now)
	}
	// A node about a second off, whose reports arrive with some delay,
	// keeps one shift rather than flipping between restamped and not.
	var near Clocks
	base := server.Add(time.Hour)
	for i, d := range []time.Duration{0, 400 * time.Millisecond, 100 * time.Millisecond, 350 * time.Millisecond} {
		// 1.2 s ahead: a delayed report arrives less than a second off.
		sampled := base.Add(time.Duration(i)*time.Second + 1200*time.Millisecond)
		r := report(sampled)
		by := near.Align("n2", &r, base.Add(time.Duration(i)*time.Second+d))
		if by != -1200*time.Millisecond {
			t.Fatalf("near report %d moved by %v, want the kept -1.2s", i, by)
		}
	}
	// A report without times takes the arrival and leaves the shift.
	empty := Report{Instances: []InstanceSample{{Namespace: "ns", Name: "i"}}}
	if by := near.Align("n2", &empty, base); by != 0 || !empty.Instances[0].Time.Equal(base) {
		t.Fatalf("a report without times: moved by %v to %v", by, empty.Instances[0].Time)
	}
	if got := near.shifts["n2"]; got != -1200*time.Millisecond {
		t.Fatalf("a report without times changed the node's shift to %v", got)
	}

	// A report on time is left as it is, and the shift forgotten.
	now = now.Add(time.Second)
	r = report(now.Add(-200 * time.Millisecond))
	if by := c.Align("n1", &r, now); by != 0 || !r.Time().Equal(now.Add(-200*time.Millisecond)) {
		t.Fatalf("a report on time moved by %v", by)
	}
	if _, ok := c.shifts["n1"]; ok {
		t.Fatal("the shift of a node whose clock was set right is kept")
	}
}
