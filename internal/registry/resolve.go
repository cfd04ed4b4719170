package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/reference"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// Resolve returns the digest a tag of a repository points at, reading
// the registry's storage directly (no HTTP, no credentials): the API
// server pins App images to digests with it at admission.
func (r *Registry) Resolve(ctx context.Context, repo, tag string) (string, error) {
	named, err := reference.WithName(repo)
	if err != nil {
		return "", fmt.Errorf("%w: repository %q: %v", v1.ErrInvalid, repo, err)
	}
	rep, err := r.ns.Repository(ctx, named)
	if err != nil {
		return "", fmt.Errorf("repository %s: %w", repo, err)
	}
	desc, err := rep.Tags(ctx).Get(ctx, tag)
	if err != nil {
		var unknown distribution.ErrTagUnknown
		if errors.As(err, &unknown) || strings.Contains(err.Error(), "unknown") {
			return "", fmt.Errorf("%w: %s:%s is not in the registry", v1.ErrNotFound, repo, tag)
		}
		return "", fmt.Errorf("resolve %s:%s: %w", repo, tag, err)
	}
	return desc.Digest.String(), nil
}
