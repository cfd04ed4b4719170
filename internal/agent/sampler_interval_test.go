package agent

import (
	"context"
	"testing"
	"time"
)

// `gantry up --sample-interval -1s` and `gantry agent --sample-interval
// -1s` passed the negative duration through Config.SampleInterval
// (setDefaults only replaced 0), and the sampler's time.NewTicker panicked
// in its goroutine once the agent ran: the whole process (under gantry up,
// the API server and etcd too) died.
func TestNegativeSampleIntervalDoesNotPanic(t *testing.T) {
	cfg := Config{NodeName: "n1", SampleInterval: -time.Second}
	cfg.setDefaults()
	s := &sampler{interval: cfg.SampleInterval}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	defer func() {
		if v := recover(); v != nil {
			t.Fatalf("sampler with --sample-interval %v panicked: %v", cfg.SampleInterval, v)
		}
	}()
	s.run(ctx)
}
