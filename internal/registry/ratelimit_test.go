package registry

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
)

// countingAuth counts the credentials that reach the token store, and
// knows the tokens in use (as auth.Authenticator.Known does).
type countingAuth struct {
	*fakeAuth
	calls atomic.Int64
}

func (c *countingAuth) Authenticate(ctx context.Context, tok string) (Identity, error) {
	c.calls.Add(1)
	return c.fakeAuth.Authenticate(ctx, tok)
}

func (c *countingAuth) Known(tok string) bool {
	c.fakeAuth.mu.Lock()
	defer c.fakeAuth.mu.Unlock()
	_, ok := c.fakeAuth.tokens[tok]
	return ok
}

// A source that keeps failing still has its tokens in use served (many
// users may share its address), but a flood of made-up tokens from it
// must not reach the token store: the first version of that change
// checked every credential, a store read each.
func TestBlockedSourceReachesTheTokenStoreOnlyWithTokensInUse(t *testing.T) {
	ca := &countingAuth{fakeAuth: newFakeAuth()}
	tr := newTestRegistry(t, func(c *Config) { c.Authenticator = ca })
	const n = 300
	for i := 0; i < n; i++ {
		tr.do(t, "GET", "/v2/", fmt.Sprintf("bogus-%d", i), nil, nil)
	}
	if got := ca.calls.Load(); got > 120 {
		t.Errorf("%d bogus credentials from one address: %d reached the token store; want the limiter to stop most (burst 40, 5/s)", n, got)
	}
	if resp, _ := tr.do(t, "GET", "/v2/", adminToken, nil, nil); resp.StatusCode != 200 {
		t.Errorf("a token in use, from the same address: %d, want 200", resp.StatusCode)
	}
}
