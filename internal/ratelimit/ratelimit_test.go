package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

func TestFailLimiter(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name        string
		fails       int
		after       time.Duration
		wantBlocked bool
	}{
		{"no failures", 0, 0, false},
		{"fewer failures than the burst", 4, 0, false},
		{"the burst used up", 5, 0, true},
		{"refilled by one after a second", 5, time.Second, false},
		{"still blocked just before the refill", 5, 900 * time.Millisecond, true},
		{"many failures refill no faster", 20, 2 * time.Second, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewFailLimiter(1, 5)
			for i := range tt.fails {
				l.Fail("10.0.0.1", t0.Add(time.Duration(i)*time.Millisecond))
			}
			if got := l.Blocked("10.0.0.1", t0.Add(tt.after)); got != tt.wantBlocked {
				t.Errorf("Blocked after %d failures and %v = %v; want %v", tt.fails, tt.after, got, tt.wantBlocked)
			}
			if l.Blocked("10.0.0.2", t0.Add(tt.after)) {
				t.Error("another source is blocked too")
			}
		})
	}
}

// Sources that never fail are asked about on every request: they must not
// each keep a bucket, since only Fail sweeps old ones.
func TestFailLimiterKeepsNoBucketForSourcesThatOnlySucceed(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	l := NewFailLimiter(1, 5)
	for i := range 10000 {
		l.Blocked(fmt.Sprintf("10.1.%d.%d", i/256, i%256), t0)
	}
	if n := len(l.buckets); n != 0 {
		t.Errorf("%d buckets for sources that never failed; want 0", n)
	}
	l.Fail("10.0.0.1", t0)
	l.Fail("10.0.0.2", t0.Add(11*time.Minute))
	if _, ok := l.buckets["10.0.0.1"]; ok {
		t.Error("a source idle for 11 minutes kept its bucket through a sweep")
	}
}
