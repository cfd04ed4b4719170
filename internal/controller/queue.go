package controller

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// Queue is a work queue of keys: a key added many times before it is
// processed is processed once, a key is never processed by two workers at
// once, and keys can be scheduled for later.
type Queue struct {
	mu       sync.Mutex
	cond     *sync.Cond
	queue    []string
	queued   map[string]bool
	active   map[string]bool
	again    map[string]bool // added while active
	delayed  delayHeap
	timer    *time.Timer
	shutdown bool
}

// NewQueue returns an empty queue.
func NewQueue() *Queue {
	q := &Queue{queued: map[string]bool{}, active: map[string]bool{}, again: map[string]bool{}}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// Add queues key.
func (q *Queue) Add(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.addLocked(key)
}

func (q *Queue) addLocked(key string) {
	if q.shutdown || q.queued[key] {
		return
	}
	if q.active[key] {
		q.again[key] = true
		return
	}
	q.queued[key] = true
	q.queue = append(q.queue, key)
	q.cond.Signal()
}

// AddAfter queues key after d.
func (q *Queue) AddAfter(key string, d time.Duration) {
	if d <= 0 {
		q.Add(key)
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	heap.Push(&q.delayed, delayed{key: key, at: time.Now().Add(d)})
	q.armLocked()
}

func (q *Queue) armLocked() {
	if len(q.delayed) == 0 {
		return
	}
	d := time.Until(q.delayed[0].at)
	if q.timer == nil {
		q.timer = time.AfterFunc(d, q.fire)
	} else {
		q.timer.Reset(d)
	}
}

func (q *Queue) fire() {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := time.Now()
	for len(q.delayed) > 0 && !q.delayed[0].at.After(now) {
		d := heap.Pop(&q.delayed).(delayed)
		q.addLocked(d.key)
	}
	q.armLocked()
}

// Get waits for a key; ok is false after Shutdown.
func (q *Queue) Get() (key string, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.queue) == 0 && !q.shutdown {
		q.cond.Wait()
	}
	if q.shutdown {
		return "", false
	}
	key = q.queue[0]
	q.queue = q.queue[1:]
	delete(q.queued, key)
	q.active[key] = true
	return key, true
}

// Done marks key processed; if it was added meanwhile it is queued again.
func (q *Queue) Done(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.active, key)
	if q.again[key] {
		delete(q.again, key)
		q.addLocked(key)
	}
}

// Shutdown wakes every Get with ok false.
func (q *Queue) Shutdown() {
	q.mu.Lock()
	q.shutdown = true
	if q.timer != nil {
		q.timer.Stop()
	}
	q.mu.Unlock()
	q.cond.Broadcast()
}

// RunWorkers processes keys with n workers until ctx ends.
func (q *Queue) RunWorkers(ctx context.Context, n int, fn func(ctx context.Context, key string)) {
	go func() {
		<-ctx.Done()
		q.Shutdown()
	}()
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				key, ok := q.Get()
				if !ok {
					return
				}
				fn(ctx, key)
				q.Done(key)
			}
		}()
	}
	wg.Wait()
}

type delayed struct {
	key string
	at  time.Time
}

type delayHeap []delayed

func (h delayHeap) Len() int           { return len(h) }
func (h delayHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h delayHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *delayHeap) Push(x any)        { *h = append(*h, x.(delayed)) }
func (h *delayHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
