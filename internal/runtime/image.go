package runtime

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	remoteserrors "github.com/containerd/containerd/v2/core/remotes/errors"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/opencontainers/image-spec/identity"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/pki"
)

// ImageInfo describes an image present in containerd, unpacked.
type ImageInfo struct {
	Ref        string // normalized reference, e.g. "127.0.0.1:5000/team/app@sha256:…"
	Digest     string // digest of the manifest (or index) the ref points at
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	User       string
	// Architecture is what the image's config says it was built for
	// ("amd64", "386", ...); empty if it does not say.
	Architecture string
}

// NormalizeRef turns a user's image reference into containerd's image
// name: "busybox" becomes "docker.io/library/busybox:latest". A ref with
// both a tag and a digest keeps only the digest.
func NormalizeRef(ref string) (string, error) {
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return "", fmt.Errorf("image reference %q: %w: %v", ref, v1.ErrInvalid, err)
	}
	return named.String(), nil
}

// Timeouts of registry traffic. A registry that accepts a connection and
// then says nothing must not hold a deploy forever.
const (
	registryDialTimeout   = 10 * time.Second
	registryHeaderTimeout = 30 * time.Second
)

// EnsureImage makes ref present and unpacked in the snapshotter, pulling
// it if needed. An image already present is not fetched again, so a ref
// by digest or one pulled before costs no registry round trip. A ref the
// registry does not have fails fast with an error wrapping v1.ErrNotFound.
func (d *Driver) EnsureImage(ctx context.Context, ref string) (ImageInfo, error) {
	info, _, err := d.ensureImage(ctx, ref)
	return info, err
}

// ensureImage is EnsureImage that also returns the containerd image. The
// common case, an image already unpacked, takes no lock: a burst of
// starts of one image checks it in parallel rather than in a queue. Only
// a pull or an unpack is serialized per ref, so two instances of one
// revision that start together pull once.
func (d *Driver) ensureImage(ctx context.Context, ref string) (ImageInfo, client.Image, error) {
	name, err := NormalizeRef(ref)
	if err != nil {
		return ImageInfo{}, nil, err
	}
	ctx = d.ns(ctx)
	if img, ok, err := d.unpackedImage(ctx, name); err != nil || ok {
		if err != nil {
			return ImageInfo{}, nil, err
		}
		return d.imageInfo(ctx, name, img)
	}

	unlock := d.pulls.lock(name)
	defer unlock()
	// Whoever held the lock before may have pulled it.
	img, ok, err := d.unpackedImage(ctx, name)
	switch {
	case err != nil:
		return ImageInfo{}, nil, err
	case ok:
	case img != nil:
		if err := img.Unpack(ctx, d.cfg.Snapshotter); err != nil {
			return ImageInfo{}, nil, fmt.Errorf("unpack image %s: %w", name, kindOf(err))
		}
	default:
		start := time.Now()
		img, err = d.client.Pull(ctx, name,
			client.WithPullUnpack,
			client.WithPullSnapshotter(d.cfg.Snapshotter),
			client.WithResolver(d.resolver()),
		)
		if err != nil {
			return ImageInfo{}, nil, pullError(name, err)
		}
		d.log.Info("pulled image", "ref", name, "digest", img.Target().Digest.String(), "took", time.Since(start).Round(time.Millisecond))
	}
	return d.imageInfo(ctx, name, img)
}

// unpackedImage looks name up. It returns the image and true if it is
// present and unpacked, the image and false if it is present but not
// unpacked, and nil and false if containerd does not have it.
//
// The image record and the snapshot of its top layer are asked for every
// time; what follows from the image's content (the chain ID of its
// layers, its config) is read once per target digest, since content is
// immutable: an image present costs two round trips instead of a dozen.
func (d *Driver) unpackedImage(ctx context.Context, name string) (client.Image, bool, error) {
	img, err := d.client.GetImage(ctx, name)
	switch {
	case errdefs.IsNotFound(err):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("look up image %s: %w", name, kindOf(err))
	}
	f, err := d.imageFacts(ctx, name, img)
	if err != nil {
		return nil, false, err
	}
	_, err = d.client.SnapshotService(d.cfg.Snapshotter).Stat(ctx, f.chainID)
	switch {
	case errdefs.IsNotFound(err):
		return img, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("check image %s: %w", name, kindOf(err))
	}
	return img, true, nil
}

// imageFacts is what an image's content says, by its target digest.
type imageFacts struct {
	chainID string    // of its layers: the snapshot an unpacked image has
	info    ImageInfo // without Ref, which depends on the name used
}

// imageFacts returns the facts of img, reading its content the first time
// its target digest is seen.
func (d *Driver) imageFacts(ctx context.Context, name string, img client.Image) (imageFacts, error) {
	dgst := img.Target().Digest
	d.factsMu.Lock()
	f, ok := d.facts[dgst]
	d.factsMu.Unlock()
	if ok {
		return f, nil
	}
	diffs, err := img.RootFS(ctx)
	if err != nil {
		return imageFacts{}, fmt.Errorf("check image %s: %w", name, kindOf(err))
	}
	spec, err := img.Spec(ctx)
	if err != nil {
		return imageFacts{}, fmt.Errorf("read config of image %s: %w", name, kindOf(err))
	}
	f = imageFacts{
		chainID: identity.ChainID(diffs).String(),
		info: ImageInfo{
			Digest:     dgst.String(),
			Entrypoint: spec.Config.Entrypoint,
			Cmd:        spec.Config.Cmd,
			Env:        spec.Config.Env,
			WorkingDir: spec.Config.WorkingDir,
			User:       spec.Config.User,

			Architecture: spec.Architecture,
		},
	}
	d.factsMu.Lock()
	d.facts[dgst] = f
	d.factsMu.Unlock()
	return f, nil
}

func (d *Driver) imageInfo(ctx context.Context, name string, img client.Image) (ImageInfo, client.Image, error) {
	f, err := d.imageFacts(ctx, name, img)
	if err != nil {
		return ImageInfo{}, nil, err
	}
	info := f.info
	info.Ref = name
	return info, img, nil
}

// pullError says what went wrong in words an operator can act on, and
// keeps the error kind.
func pullError(name string, err error) error {
	var netErr *net.OpError
	var status remoteserrors.ErrUnexpectedStatus
	if errors.As(err, &status) {
		switch status.StatusCode {
		case http.StatusUnauthorized:
			err = fmt.Errorf("%w: %w", errdefs.ErrUnauthenticated, err)
		case http.StatusForbidden:
			err = fmt.Errorf("%w: %w", errdefs.ErrPermissionDenied, err)
		case http.StatusNotFound:
			err = fmt.Errorf("%w: %w", errdefs.ErrNotFound, err)
		}
	}
	switch {
	case errdefs.IsNotFound(err):
		return fmt.Errorf("pull %s: the registry has no such image (check the name and tag, and that it was pushed): %w: %v", name, v1.ErrNotFound, err)
	case errdefs.IsUnauthorized(err) || errors.Is(err, docker.ErrInvalidAuthorization):
		return fmt.Errorf("pull %s: the registry refused the credentials: %w: %v", name, v1.ErrUnauthorized, err)
	case errdefs.IsPermissionDenied(err):
		return fmt.Errorf("pull %s: access denied by the registry: %w: %v", name, v1.ErrForbidden, err)
	case errors.As(err, &netErr):
		return fmt.Errorf("pull %s: cannot reach the registry: %w: %v", name, v1.ErrUnavailable, err)
	}
	return fmt.Errorf("pull %s: %w", name, kindOf(err))
}

// resolver reaches registries over HTTPS, or plain HTTP where PlainHTTP
// says so, with the configured credentials.
func (d *Driver) resolver() remotes.Resolver {
	var tlsCfg *tls.Config
	if d.cfg.RootCAs != nil {
		// Nodes' listeners have certificates of the same CA: none may
		// pass for the registry, which gets the node's credential.
		tlsCfg = &tls.Config{RootCAs: d.cfg.RootCAs, MinVersion: tls.VersionTLS12, VerifyConnection: pki.RefuseNodeListeners}
	}
	transport := docker.DefaultHTTPTransport(tlsCfg)
	transport.DialContext = (&net.Dialer{Timeout: registryDialTimeout, KeepAlive: 30 * time.Second}).DialContext
	transport.ResponseHeaderTimeout = registryHeaderTimeout
	httpClient := &http.Client{Transport: transport}
	var creds func(string) (string, string, error)
	if d.cfg.Credentials != nil {
		creds = func(host string) (string, string, error) {
			u, s := d.cfg.Credentials(host)
			return u, s, nil
		}
	}
	hosts := docker.ConfigureDefaultRegistries(
		docker.WithClient(httpClient),
		docker.WithPlainHTTP(func(host string) (bool, error) { return d.cfg.PlainHTTP(host), nil }),
		docker.WithAuthorizer(docker.NewDockerAuthorizer(
			docker.WithAuthClient(httpClient),
			docker.WithAuthCreds(creds),
		)),
	)
	return docker.NewResolver(docker.ResolverOptions{Hosts: hosts})
}
