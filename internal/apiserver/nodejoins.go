package apiserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
)

// nodeJoinsTTL is how long the time of a node's last join under a dead
// node's name is trusted from the store before it is read again.
const nodeJoinsTTL = 5 * time.Second

// nodeJoins remembers, by node name, the Node's status.joinedAt: node
// certificates that start before it belong to a machine that lost the
// name to a later join.
type nodeJoins struct {
	mu sync.Mutex
	m  map[string]nodeJoin
	// forgotten counts forget calls: a store read begun before one (a
	// join) must not be cached after it.
	forgotten uint64
}

type nodeJoin struct {
	at   time.Time // zero: no join under a dead node's name
	read time.Time
}

// set caches at for node, as read from the store when forgotten was
// since (a value from cached): unless a join came in between.
func (j *nodeJoins) set(node string, at time.Time, since uint64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.forgotten != since {
		return
	}
	if j.m == nil {
		j.m = map[string]nodeJoin{}
	}
	j.m[node] = nodeJoin{at: at, read: time.Now()}
}

// forget drops what is known of node, so that the next check reads the
// store.
func (j *nodeJoins) forget(node string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	delete(j.m, node)
	j.forgotten++
}

// cached is what is known of node, if fresh, and the count of forgets
// to give set after a store read.
func (j *nodeJoins) cached(node string) (time.Time, bool, uint64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	e, ok := j.m[node]
	if !ok || time.Since(e.read) > nodeJoinsTTL {
		return time.Time{}, false, j.forgotten
	}
	return e.at, true, j.forgotten
}

// currentNodeCert refuses the client certificate of cs, which names node,
// if it starts before the last join under node's name: another machine
// joined since, and this one no longer holds the name.
func (s *Server) currentNodeCert(ctx context.Context, node string, cs *tls.ConnectionState) error {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return nil // no certificate: a node credential token, checked as a token
	}
	at, ok, since := s.joins.cached(node)
	if !ok {
		n, err := store.Get[*v1.Node](ctx, s.store, "", node)
		switch {
		case errors.Is(err, v1.ErrNotFound):
		case err != nil:
			return err
		case n.Status.JoinedAt != nil:
			at = *n.Status.JoinedAt
		}
		s.joins.set(node, at, since)
	}
	cert := cs.VerifiedChains[0][0]
	if at.IsZero() || !cert.NotBefore.Before(at) {
		return nil
	}
	return fmt.Errorf("%w: this certificate of node %s dates from %s, and another machine joined under that name at %s: this machine no longer holds it; stop its agent (gantry down), or join it again under another name (remove identity.json, gantry agent --join)",
		v1.ErrNodeSuperseded, node, cert.NotBefore.UTC().Format(time.RFC3339), at.UTC().Format(time.RFC3339))
}
