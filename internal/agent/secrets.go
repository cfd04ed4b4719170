package agent

import (
	"context"
	"crypto/rand"
	"fmt"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/runtime"
)

// secretValue reads one key of a secret through the API. Node credentials
// may read only secrets their instances use.
func (a *Agent) secretValue(ctx context.Context, ns, name, key string) (string, error) {
	var out map[string]string
	if err := a.api.Sub(ctx, "GET", "Secret", ns, name, "reveal", nil, &out); err != nil {
		return "", fmt.Errorf("read secret %s: %w", name, err)
	}
	v, ok := out[key]
	if !ok {
		return "", fmt.Errorf("%w: secret %s has no key %q", v1.ErrNotFound, name, key)
	}
	return v, nil
}

// secretFiles mounts the secrets an instance asks for as files.
func (a *Agent) secretFiles(ctx context.Context, i *v1.Instance, dir string) ([]runtime.Mount, error) {
	if len(i.Spec.Template.Files) > 0 {
		return nil, fmt.Errorf("%w: secret files are not supported by this agent yet", v1.ErrUnsupported)
	}
	return nil, nil
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}
