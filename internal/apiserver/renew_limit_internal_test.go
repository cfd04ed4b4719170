package apiserver

import (
	"testing"
	"time"
)

func TestRenewalLimiter(t *testing.T) {
	var l renewalLimiter
	t0 := time.Date(2026, 11, 28, 1, 0, 0, 0, time.UTC)
	steps := []struct {
		node string
		at   time.Duration
		undo bool // forget the node's renewal before this step
		want time.Duration
	}{
		{"n1", 0, false, 0},
		{"n2", time.Minute, false, 0}, // another node is not held back
		{"n1", 30 * time.Minute, false, 30 * time.Minute},
		{"n1", 59 * time.Minute, true, 0}, // the renewal at 0 failed
		{"n1", 90 * time.Minute, false, 29 * time.Minute},
		{"n1", 119 * time.Minute, false, 0},
	}
	for _, s := range steps {
		if s.undo {
			l.undo(s.node)
		}
		if got := l.take(s.node, t0.Add(s.at)); got != s.want {
			t.Errorf("%s at +%s: wait %s, want %s", s.node, s.at, got, s.want)
		}
	}
	if _, ok := l.last["n2"]; ok {
		t.Error("n2's renewal of over an hour ago is still remembered")
	}
}
