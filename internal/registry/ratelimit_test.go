package registry

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/gantry-dev/gantry/internal/ratelimit"
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

// forgetfulAuth knows no token in use, as after a restart of the server:
// a source over its failure budget is refused any platform token.
type forgetfulAuth struct{ *fakeAuth }

func (forgetfulAuth) Known(string) bool { return false }

// A request without credentials guessed nothing: every Docker or
// containerd client starts with one to learn the challenge. Such
// requests used to count as failed logins, so a host pulling many images
// at once used up its address's budget and then got 429 for a valid
// token it had not used lately. Wrong credentials still count.
func TestRequestsWithoutCredentialsAreNotFailedLogins(t *testing.T) {
	for _, tc := range []struct {
		name  string
		token string // what the flood presents; "": no credentials
		flood int    // the status of the flood's first request
		after int    // then, a valid token the server has not seen lately
	}{
		{name: "no credentials", token: "", flood: http.StatusUnauthorized, after: http.StatusOK},
		{name: "a wrong token", token: "tok-wrong", flood: http.StatusUnauthorized, after: http.StatusTooManyRequests},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTestRegistry(t, func(c *Config) { c.Authenticator = forgetfulAuth{newFakeAuth()} })
			// A budget of 40 failures that does not refill while the
			// test runs, however slowly it runs.
			tr.limiter = ratelimit.NewFailLimiter(0, 40)
			for i := range 60 {
				resp, body := tr.do(t, "GET", "/v2/", tc.token, nil, nil)
				if i == 0 && resp.StatusCode != tc.flood {
					t.Fatalf("first request of the flood: %d %s, want %d", resp.StatusCode, body, tc.flood)
				}
			}
			for _, p := range []string{"/v2/", "/v2/token?scope=repository:team/app:pull"} {
				if resp, body := tr.do(t, "GET", p, adminToken, nil, nil); resp.StatusCode != tc.after {
					t.Errorf("GET %s with a valid token after the flood: %d %s, want %d", p, resp.StatusCode, body, tc.after)
				}
			}
		})
	}
}
