package metrics

import (
	"testing"
	"time"
)

// An instance's sampling interval used to be the gap between its two
// newest samples: after one break in reporting it was the break, so the
// alert evaluator counted the instance's last sample as fresh for three
// breaks, and App let the sample before the break stand for the
// instance in every slot of it.
func TestInstanceIntervalIgnoresABreakInReporting(t *testing.T) {
	w := NewWindow(time.Hour, 10*time.Second)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	add := func(node, name string, at time.Time) {
		w.Add(Report{Node: NodeSample{Node: node, Point: Point{Time: at}},
			Instances: []InstanceSample{{Namespace: "ns", Name: name, App: "app", Node: node, CPULimit: 1, Point: Point{Time: at, CPU: 1}}}})
	}
	// a reports every 10s throughout; b for 5 minutes, then once more
	// after a 20-minute break.
	for i := 0; i <= 150; i++ {
		at := t0.Add(time.Duration(i) * 10 * time.Second)
		add("n1", "a", at)
		if i < 30 || i == 150 {
			add("n2", "b", at)
		}
	}
	if got := w.InstanceInterval("ns", "b"); got != 10*time.Second {
		t.Errorf("InstanceInterval after a 20-minute break = %s, want the agent's 10s", got)
	}
	pts, _ := w.App("ns", "app", t0)
	for _, p := range pts {
		if at := p.Time.Sub(t0); at > 5*time.Minute && at < 25*time.Minute && p.Instances != 1 {
			t.Fatalf("App's slot at +%s counts %d instances, want 1 (b was not reporting)", at, p.Instances)
		}
	}
}

// A single early or late sample (a slow sampling round) does not change
// the interval either.
func TestInstanceIntervalIgnoresOneLateSample(t *testing.T) {
	w := NewWindow(time.Hour, 10*time.Second)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, s := range []time.Duration{0, 10, 20, 30, 47, 50} {
		at := t0.Add(s * time.Second)
		w.Add(Report{Node: NodeSample{Node: "n1", Point: Point{Time: at}},
			Instances: []InstanceSample{{Namespace: "ns", Name: "i", App: "app", Node: "n1", Point: Point{Time: at}}}})
	}
	if got := w.InstanceInterval("ns", "i"); got != 10*time.Second {
		t.Errorf("InstanceInterval = %s, want 10s", got)
	}
}
