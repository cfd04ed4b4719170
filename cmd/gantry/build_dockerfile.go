package main

import (
	"context"
	"errors"

	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"
)

// buildDockerfile builds a Dockerfile context. It is filled in by the
// Dockerfile builder (internal/image/build).
func buildDockerfile(ctx context.Context, cmd *cobra.Command, g *globals, env *imageEnv, dir string) (ggcr.Image, error) {
	return nil, errors.New("Dockerfile builds are not available in this build of gantry yet: build Go packages, or import a root filesystem")
}
