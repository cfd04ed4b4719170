package apiserver

import (
	"context"
	"errors"
	"fmt"
	"slices"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/store"
)

// Anyone may make, list and revoke tokens for themselves (the guide says
// so, and the CLI's `gantry token` assumes it): a token acts with its
// user's rights, so one's own adds none. Tokens are cluster-scoped, and
// only bindings in "*" grant them, so a user bound in one namespace was
// refused `gantry token create` with 403. When the authorizer refuses a
// request on tokens, it is served still, limited to the caller's own:
// createToken makes a token for another user only for a cluster admin,
// a list shows only the caller's tokens, and a get, update or delete of
// a token that is not theirs (or does not exist) gets the authorizer's
// 403. An update may revoke the token or change its description, not
// lift a revocation or extend its expiry.

// ownTokenVerbs are what a user may do to their own tokens.
var ownTokenVerbs = []string{"create", "list", "get", "update", "delete"}

// ownTokenRequest reports whether a request the authorizer refused may be
// served for the caller's own tokens.
func ownTokenRequest(id *auth.Identity, ri *requestInfo) bool {
	return id != nil && id != auth.Anonymous && id.Node == "" && id.User != "" &&
		ri.Kind.Kind == "Token" && ri.Sub == "" && slices.Contains(ownTokenVerbs, ri.Verb)
}

// ownsToken reports whether the token named name exists and is id's.
func (s *Server) ownsToken(ctx context.Context, id *auth.Identity, name string) (bool, error) {
	t, err := store.Get[*v1.Token](ctx, s.store, "", name)
	if errors.Is(err, v1.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return t.Spec.User == id.User && t.Spec.Node == "", nil
}

// ownTokensOnly reports whether the request in ctx was allowed only for
// the caller's own tokens.
func ownTokensOnly(ctx context.Context) bool {
	ri, _ := ctx.Value(infoKey).(*requestInfo)
	return ri != nil && ri.OwnTokens
}

// checkTokenUpdate refuses what only a cluster admin may change on a
// token: a revoked token stays revoked, and its expiry may come earlier
// but not later (nor go). Either gives back a token that acts with all of
// its user's rights, as a new token for another user would, and that
// takes holding every right there is (createToken); a role that grants
// `update tokens` lets its holder revoke tokens and edit descriptions,
// not revive an admin's token; nor may a user on their own tokens (a new
// token serves them without reviving a revoked one).
func (s *Server) checkTokenUpdate(ctx context.Context, t, prev *v1.Token) error {
	revive := prev.Spec.Revoked && !t.Spec.Revoked
	e, pe := t.Spec.Expires, prev.Spec.Expires
	extend := pe != nil && (e == nil || e.After(*pe))
	if !revive && !extend {
		return nil
	}
	id := IdentityFrom(ctx)
	if !ownTokensOnly(ctx) && s.authz.Authorize(ctx, id, auth.Attributes{Verb: "*", Resource: "*", Namespace: "*"}) == nil {
		return nil
	}
	attrs := auth.Attributes{Verb: "update", Resource: "tokens", Name: t.Metadata.Name}
	if revive {
		return auth.Forbidden(id, attrs, "a revoked token stays revoked unless a cluster admin lifts it; create a new one (gantry token create)")
	}
	return auth.Forbidden(id, attrs, fmt.Sprintf("its expiry may not move past %s unless a cluster admin moves it; create a new token instead", pe.UTC().Format("2006-01-02T15:04:05Z")))
}
