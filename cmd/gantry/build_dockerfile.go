package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"

	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/internal/image/build"
)

// buildFlags are the Dockerfile options of `gantry image build`.
type buildFlags struct {
	dockerfile string
	args       []string
	target     string
	noCache    bool
	hostNet    bool
	dataDir    string
}

// buildDockerfile builds a Dockerfile context, running RUN steps in a
// containerd under the data directory (the node's, when gantry up runs
// here, or one started for the build).
func buildDockerfile(ctx context.Context, cmd *cobra.Command, g *globals, env *imageEnv, dir string, f *buildFlags) (ggcr.Image, error) {
	log, _ := newLogger("warn", "text")
	args := map[string]string{}
	for _, kv := range f.args {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			// As docker build: NAME alone passes NAME from the
			// environment, and nothing (the ARG's default stands) when
			// the environment has none.
			if v, ok = os.LookupEnv(k); !ok {
				continue
			}
		}
		args[k] = v
	}
	data := f.dataDir
	if data == "" {
		data = defaultHome()
	}
	df := f.dockerfile
	if df != "" {
		// Relative to the current directory, as docker build takes -f.
		var err error
		if df, err = filepath.Abs(df); err != nil {
			return nil, err
		}
	}
	return build.Build(ctx, build.Options{
		Dir: dir, Dockerfile: df, BuildArgs: args, Target: f.target,
		Registry: env.registry, Namespace: env.ns, Auth: env.auth,
		ContainerdDir: filepath.Join(data, "node", "containerd"),
		CacheDir:      filepath.Join(data, "build-cache"),
		NoCache:       f.noCache, HostNetwork: f.hostNet,
		Progress: cmd.ErrOrStderr(), Log: log,
	})
}
