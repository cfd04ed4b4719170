// Package keylock provides one mutex per key (a namespace, a node name),
// made on first use, for work that must not interleave for one key but
// may run at once for different keys.
package keylock

import "sync"

// Locks is a set of mutexes by key. The zero value is ready to use; it
// keeps a mutex for every key it has seen, so keys should come from a
// bounded set.
type Locks struct {
	m sync.Map // key → *sync.Mutex
}

// Lock locks key's mutex and returns its unlock.
func (l *Locks) Lock(key string) (unlock func()) {
	m, _ := l.m.LoadOrStore(key, new(sync.Mutex))
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}
