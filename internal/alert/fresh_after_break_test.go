package alert

import (
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// docs/guide.md: "A cpu or memory alert rule counts an instance's newest
// sample for three of its agent's sampling intervals (at least 30s)."
// The interval used to be the gap between the two newest samples, so
// after a break in reporting (agent cut off for 10 min, back for one
// report, then its node died) the last sample counted for 3×10 min: the
// rule fired, and stayed firing, on a sample minutes old.
func TestUsageRuleDropsAStaleSampleAfterABreakInReporting(t *testing.T) {
	f := newFixture(t, nil)
	f.create(t, appObj("web", 1))
	f.create(t, inst("web-a", "web", ready))
	f.create(t, rule("hot", v1.AlertCPU, 80))
	// The agent samples every 10 s.
	for i := 0; i < 6; i++ {
		f.clock.Advance(10 * time.Second)
		f.reportCPU(0.1)
	}
	// Cut off for 10 minutes, one report, then nothing more.
	f.clock.Advance(10 * time.Minute)
	f.reportCPU(0.49)
	// Five minutes (30 sampling intervals) later.
	f.clock.Advance(5 * time.Minute)
	f.evaluate(t)
	if st := f.rule(t, "hot").Status; st.State != v1.AlertInactive {
		t.Errorf("a sample 5 minutes old (agent samples every 10s) still counts: state = %s (%s)", st.State, st.Message)
	}
}
