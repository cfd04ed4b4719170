package agent

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/runtime"
)

// secretValue reads one key of a secret through the API. Node credentials
// may read only secrets their instances use.
func (a *Agent) secretValue(ctx context.Context, ns, name, key string) (string, error) {
	out, err := a.api.RevealSecret(ctx, ns, name)
	if err != nil {
		return "", fmt.Errorf("read secret %s: %w", name, err)
	}
	v, ok := out[key]
	if !ok {
		return "", fmt.Errorf("%w: secret %s has no key %q", v1.ErrNotFound, name, key)
	}
	return string(v), nil
}

// secretFiles writes the secrets an instance asks for as files into a
// directory on the host's tmpfs (never on disk), readable only by their
// owner (0400; directories 0500), and bind-mounts each read-only into the
// container. The runtime gives them to the user the container runs as
// (runtime.Mount.Chown), which only the image may know.
func (a *Agent) secretFiles(ctx context.Context, i *v1.Instance) ([]runtime.Mount, error) {
	return a.writeSecretFiles(ctx, i, true)
}

// writeSecretFiles is secretFiles; without fresh it writes only what is
// missing (the tmpfs emptied by a reboot) instead of starting from
// nothing: a running container bind-mounts these very files and
// directories, and one removed and made again would be gone from under
// it (a directory of keys left empty). Files that are there keep the
// values the container started with, as its environment does: a changed
// secret reaches an instance when it is replaced (rollout restart), never
// half of it at once under a running program.
func (a *Agent) writeSecretFiles(ctx context.Context, i *v1.Instance, fresh bool) ([]runtime.Mount, error) {
	files := i.Spec.Template.Files
	if len(files) == 0 {
		return nil, nil
	}
	dir := a.secretDir(containerID(i.Metadata.Key()))
	if fresh {
		os.RemoveAll(dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("secret files: %w", err)
	}
	var mounts []runtime.Mount
	for n, f := range files {
		src := filepath.Join(dir, fmt.Sprintf("%d", n))
		mount := runtime.Mount{Source: src, Destination: f.Path, ReadOnly: true, Chown: true}
		if _, err := os.Lstat(src); err == nil && !fresh {
			// There, as the container started with it: kept whole.
			mounts = append(mounts, mount)
			continue
		}
		out, err := a.api.RevealSecret(ctx, i.Metadata.Namespace, f.Secret)
		if err != nil {
			return nil, fmt.Errorf("read secret %s: %w", f.Secret, err)
		}
		// Written beside it, then renamed into place: a file or
		// directory there is whole (one the agent stopped writing would
		// be kept, half of it, by the next adoption).
		tmp := src + ".new"
		os.RemoveAll(tmp)
		if f.Key != "" {
			v, ok := out[f.Key]
			if !ok {
				return nil, fmt.Errorf("%w: secret %s has no key %q", v1.ErrNotFound, f.Secret, f.Key)
			}
			if err := os.WriteFile(tmp, v, 0o400); err != nil {
				return nil, err
			}
		} else {
			if err := os.Mkdir(tmp, 0o700); err != nil {
				return nil, err
			}
			for k, v := range out {
				if err := os.WriteFile(filepath.Join(tmp, k), v, 0o400); err != nil {
					return nil, err
				}
			}
			if err := os.Chmod(tmp, 0o500); err != nil {
				return nil, err
			}
		}
		if err := os.Rename(tmp, src); err != nil {
			return nil, fmt.Errorf("secret files: %w", err)
		}
		mounts = append(mounts, mount)
	}
	return mounts, nil
}

// ownSecretFiles gives the secret files written again for an adopted
// container to the user it runs as: the one the runtime recorded, or,
// for a container made before it did, the App's runAsUser and
// runAsGroup (root otherwise, as then).
func ownSecretFiles(mounts []runtime.Mount, c runtime.Container, sc *v1.SecurityContext) error {
	uid, gid := 0, 0
	switch {
	case c.HasUser:
		uid, gid = int(c.UID), int(c.GID)
	case sc != nil:
		if sc.RunAsUser != nil {
			uid = int(*sc.RunAsUser)
		}
		if sc.RunAsGroup != nil {
			gid = int(*sc.RunAsGroup)
		}
	}
	for _, m := range mounts {
		if err := runtime.ChownTree(m.Source, uid, gid); err != nil {
			return err
		}
	}
	return nil
}

// secretDir is where an instance's secret files live: under /run, a
// tmpfs, so that values never reach a disk.
func (a *Agent) secretDir(id string) string {
	return filepath.Join(a.cfg.SecretDir, id)
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}
