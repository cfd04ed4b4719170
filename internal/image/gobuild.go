package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	ggcr "github.com/google/go-containerregistry/pkg/v1"
)

// BuildGo builds the image of the Go main package in dir, ko-style, for
// `gantry image build DIR` when DIR holds Go code: the package is
// compiled into a static linux binary for the host's architecture and
// packed FROM scratch as /NAME, its entrypoint, where NAME is the last
// element of the package's import path. cfg adds to the configuration
// (its Entrypoint, when set, wins).
func BuildGo(ctx context.Context, dir string, cfg Config) (ggcr.Image, error) {
	name, err := goMainName(ctx, dir)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "gantry-build-go-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, name)
	if err := buildStatic(ctx, dir, bin, goEnv()); err != nil {
		return nil, err
	}
	// GoBinary reads the binary into the layer now, so tmp can go.
	return GoBinary(bin, name, cfg)
}

// IsGoMain reports whether dir holds a Go main package (and no
// Dockerfile, which takes precedence in `gantry image build`).
func IsGoMain(ctx context.Context, dir string) bool {
	if _, err := os.Stat(filepath.Join(dir, "Dockerfile")); err == nil {
		return false
	}
	_, err := goMainName(ctx, dir)
	return err == nil
}

// goMainName checks that dir holds a main package and names its binary.
func goMainName(ctx context.Context, dir string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "-f", "{{.Name}} {{.ImportPath}}", ".")
	cmd.Dir = dir
	cmd.Env = goEnv()
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("%s holds no buildable Go package: %s", dir, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("run go list in %s: %w", dir, err)
	}
	pkg, importPath, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	if pkg != "main" {
		return "", fmt.Errorf("%s holds Go package %s, not a main package: only commands can become images", dir, pkg)
	}
	name := path.Base(importPath)
	if importPath == "" || importPath == "." || importPath == "command-line-arguments" || strings.HasPrefix(importPath, "_") {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return "", err
		}
		name = filepath.Base(abs)
	}
	return name, nil
}

// goEnv is the environment of the go commands that build an image's
// binary: a static Linux binary for this machine's architecture, which
// the image is labelled with, whatever GOOS or GOARCH the user's shell
// exports for cross-compiling.
func goEnv() []string {
	return append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch())
}
