package apiserver

import (
	"sync"
	"time"
)

// failLimiter limits failed authentications per source address with a
// token bucket, so that guessing tokens is slow. Successful requests are
// not limited.
type failLimiter struct {
	mu      sync.Mutex
	rate    float64 // tokens per second
	burst   float64
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newFailLimiter(perSecond, burst float64) *failLimiter {
	return &failLimiter{rate: perSecond, burst: burst, buckets: map[string]*bucket{}}
}

// blocked reports whether source has used up its failures.
func (l *failLimiter) blocked(source string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.refill(source, now)
	return b.tokens < 1
}

// fail records a failed authentication.
func (l *failLimiter) fail(source string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.refill(source, now)
	b.tokens--
	if now.Sub(l.swept) > time.Minute {
		for k, b := range l.buckets {
			if now.Sub(b.last) > 10*time.Minute {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
}

func (l *failLimiter) refill(source string, now time.Time) *bucket {
	b, ok := l.buckets[source]
	if !ok {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[source] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	return b
}
