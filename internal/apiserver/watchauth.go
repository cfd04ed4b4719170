package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/auth"
)

// authEpoch counts this server's writes of Roles, RoleBindings, Tokens
// and Users: each may take a right away from a caller whose watch was
// authorized when it began. Watches wait on the channel of current and
// check their caller again when it closes, as do followed logs and exec
// sessions (guardStream); nothing is checked per event.
type authEpoch struct {
	n  atomic.Uint64
	mu sync.Mutex
	ch chan struct{} // closed by the next bump
}

// load returns the epoch; a request reads it before it is authenticated.
func (e *authEpoch) load() uint64 { return e.n.Load() }

// bump moves the epoch on, after the write and after the caches it
// concerns were dropped, and wakes the watches.
func (e *authEpoch) bump() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n.Add(1)
	if e.ch != nil {
		close(e.ch)
		e.ch = nil
	}
}

// current returns the epoch and a channel closed at its next bump.
func (e *authEpoch) current() (uint64, <-chan struct{}) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ch == nil {
		e.ch = make(chan struct{})
	}
	return e.n.Load(), e.ch
}

// watchRechecked, when set (by tests), is called after each re-check of a
// watch's caller with its user and the result.
var watchRechecked func(user string, err error)

// watchRecheck returns the check that a watch's caller may still make it,
// as serveAPI decided at its start: its token still authenticates (not
// deleted, revoked or expired, its user neither disabled nor deleted) as
// the same identity, and the authorizer still allows the request. It
// checks a node's client certificate only against a later join under the
// node's name (currentNodeCert): the node restriction does not depend on
// roles.
func (s *Server) watchRecheck(r *http.Request, ri *requestInfo) func(context.Context) error {
	id := IdentityFrom(r.Context())
	tok, bearer := bearerToken(r)
	if !bearer && id.Node != "" {
		return func(ctx context.Context) error { return s.currentNodeCert(ctx, id.Node, r.TLS) }
	}
	attrs := ri.attributes()
	return func(ctx context.Context) error {
		err := s.stillAllowed(ctx, tok, bearer, id, attrs)
		if watchRechecked != nil {
			watchRechecked(id.User, err)
		}
		return err
	}
}

// guardStream returns r with a context that is cancelled, ending the
// stream it serves (followed logs, exec), once its caller may no longer
// make it: checked as for a watch, whenever the auth epoch moves on and
// every watchHeartbeat, until r's context ends or the returned stop is
// called. Proxied streams carry no event to say why, so they just end: a
// follower that reconnects is told (401 or 403), and exec ends as if its
// connection broke.
func (s *Server) guardStream(r *http.Request, ri *requestInfo) (*http.Request, context.CancelFunc, error) {
	recheck := s.watchRecheck(r, ri)
	var changed <-chan struct{}
	if recheck != nil {
		var epoch uint64
		epoch, changed = s.authEpoch.current()
		// A write while the request was authorized: check again before
		// the stream opens, so that a refusal is a 401 or 403.
		if epoch != ri.authEpoch {
			if err := recheck(r.Context()); refused(err) {
				return nil, nil, err
			}
		}
	}
	ctx, cancel := context.WithCancelCause(r.Context())
	if recheck == nil {
		return r.WithContext(ctx), func() { cancel(context.Canceled) }, nil
	}
	done := make(chan struct{})
	// stop waits for the checks to end: none outlives the request.
	stop := func() {
		cancel(context.Canceled)
		<-done
	}
	heartbeat := time.NewTicker(watchHeartbeat)
	go func() {
		defer close(done)
		defer heartbeat.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-changed:
				_, changed = s.authEpoch.current()
			case <-heartbeat.C:
			}
			err := recheck(ctx)
			if ctx.Err() != nil {
				return
			}
			if refused(err) {
				id := IdentityFrom(ctx)
				s.log.InfoContext(ctx, "stream: caller may no longer make it; ending it", "user", id.User, "resource", ri.Kind.Plural+"/"+ri.Sub, "ns", ri.Namespace, "name", ri.Name, "err", err)
				cancel(fmt.Errorf("stream ended: its caller may no longer make it: %w", err))
				return
			}
			if err != nil {
				s.log.WarnContext(ctx, "stream: could not check the caller again; trying at the next heartbeat", "resource", ri.Kind.Plural+"/"+ri.Sub, "err", err)
			}
		}
	}()
	return r.WithContext(ctx), stop, nil
}

func (s *Server) stillAllowed(ctx context.Context, tok string, bearer bool, id *auth.Identity, attrs auth.Attributes) error {
	if bearer {
		now, err := s.authn.Authenticate(ctx, tok)
		if err != nil {
			return err
		}
		if now.User != id.User || now.Node != id.Node {
			return fmt.Errorf("%w: the token now belongs to another identity", v1.ErrUnauthorized)
		}
	}
	return s.authz.Authorize(ctx, id, attrs)
}

// refused reports whether a re-check's error says the caller may no
// longer watch; another (the store unavailable) leaves the watch running
// until the next check.
func refused(err error) bool {
	return errors.Is(err, v1.ErrUnauthorized) || errors.Is(err, v1.ErrForbidden)
}
