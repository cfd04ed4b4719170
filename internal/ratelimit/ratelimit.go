// Package ratelimit slows down guessing: it counts failed authentications
// per source address in token buckets. The API server and the registry
// consult it before checking a credential.
package ratelimit

import (
	"sync"
	"time"
)

// FailLimiter limits failed authentications per source address with a
// token bucket, so that guessing tokens is slow. Successful requests are
// not limited.
type FailLimiter struct {
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

// NewFailLimiter allows burst failures, refilled at perSecond.
func NewFailLimiter(perSecond, burst float64) *FailLimiter {
	return &FailLimiter{rate: perSecond, burst: burst, buckets: map[string]*bucket{}}
}

// Blocked reports whether source has used up its failures.
func (l *FailLimiter) Blocked(source string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.buckets[source]; !ok {
		// Never failed lately: no bucket, so that sources that only
		// succeed (which Fail's sweep never sees) cost no memory.
		return l.burst < 1
	}
	b := l.refill(source, now)
	return b.tokens < 1
}

// Fail records a failed authentication.
func (l *FailLimiter) Fail(source string, now time.Time) {
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

func (l *FailLimiter) refill(source string, now time.Time) *bucket {
	b, ok := l.buckets[source]
	if !ok {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[source] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	return b
}
