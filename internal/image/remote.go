package image

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/gantry-dev/gantry/internal/pki"
)

// Auth says how to reach and log in to a registry, normally Gantry's own.
type Auth struct {
	// Token is a Gantry token. It is sent as the password of Basic auth
	// (Gantry's registry ignores the user name), from which the registry
	// issues its own short-lived bearer tokens. Empty means anonymous.
	Token string
	// RootCAs verifies the registry's TLS certificate, for a registry
	// whose certificate comes from Gantry's own CA. Nil means the
	// system's roots.
	RootCAs *x509.CertPool
	// Insecure allows plain HTTP and unverified TLS to a registry that
	// is not on a loopback address. Loopback registries are always
	// reachable over plain HTTP.
	Insecure bool
}

// userName is what Basic auth sends as the user; Gantry's registry takes
// only the password.
const userName = "gantry"

// Parse parses an image reference that names its registry host, such as
// 127.0.0.1:5000/team/app:v1 (see Reference for bare names).
func (a Auth) Parse(ref string) (name.Reference, error) {
	if !hasRegistryHost(ref) {
		return nil, fmt.Errorf("image reference %q names no registry: use HOST:PORT/NAMESPACE/NAME:TAG", ref)
	}
	var opts []name.Option
	if a.Insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	return r, nil
}

// Reference qualifies an image name the way an App's image is resolved:
// a name with a registry host stays as it is; otherwise it lives in
// registry, and a name without a slash lives in namespace. So "hello:v1"
// in namespace team is REGISTRY/team/hello:v1, and "library/busybox"
// is REGISTRY/library/busybox.
func Reference(registry, namespace, ref string) string {
	if hasRegistryHost(ref) {
		return ref
	}
	if !strings.Contains(strings.SplitN(ref, "@", 2)[0], "/") {
		ref = namespace + "/" + ref
	}
	return strings.TrimSuffix(registry, "/") + "/" + ref
}

// hasRegistryHost reports whether the first path component of ref is a
// host: it has a dot or a port, or is localhost.
func hasRegistryHost(ref string) bool {
	first, _, ok := strings.Cut(ref, "/")
	return ok && (strings.ContainsAny(first, ".:") || first == "localhost")
}

// RemoteOptions are the go-containerregistry options for talking to the
// registry with this Auth, for callers (the build package) that use the
// remote package directly.
func (a Auth) RemoteOptions(ctx context.Context) []remote.Option {
	var auth authn.Authenticator = authn.Anonymous
	if a.Token != "" {
		auth = &authn.Basic{Username: userName, Password: a.Token}
	}
	return []remote.Option{remote.WithContext(ctx), remote.WithAuth(auth), remote.WithTransport(a.transport())}
}

func (a Auth) transport() http.RoundTripper {
	t := remote.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: a.RootCAs, InsecureSkipVerify: a.Insecure, MinVersion: tls.VersionTLS12,
		VerifyConnection: pki.RefuseNodeListeners}
	if a.Insecure {
		return t
	}
	return httpsOnly{t}
}

// httpsOnly refuses plain HTTP to anything but a loopback registry.
// go-containerregistry falls back to HTTP by itself when HTTPS fails for
// a private address (10/8, 172.16/12, 192.168/16) or a .local name, and
// would send the token in clear there; Auth promises plain HTTP only to
// loopback unless Insecure is set.
type httpsOnly struct{ next http.RoundTripper }

func (h httpsOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !isLoopback(req.URL.Hostname()) {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("refusing plain HTTP to %s: only a registry on a loopback address is reached without TLS, so the token is not sent in clear; serve it over HTTPS", req.URL.Host)
	}
	return h.next.RoundTrip(req)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Push uploads img to ref and returns the digest of its manifest. When
// progress is set it is called with bytes done and bytes in total as the
// upload proceeds (a Bar's Update fits).
func Push(ctx context.Context, img ggcr.Image, ref string, auth Auth, progress func(done, total int64)) (ggcr.Hash, error) {
	r, err := auth.Parse(ref)
	if err != nil {
		return ggcr.Hash{}, err
	}
	opts := auth.RemoteOptions(ctx)
	var finished chan struct{}
	if progress != nil {
		updates := make(chan ggcr.Update, 16)
		finished = make(chan struct{})
		go func() {
			defer close(finished)
			for u := range updates {
				if u.Error == nil {
					progress(u.Complete, u.Total)
				}
			}
		}()
		opts = append(opts, remote.WithProgress(updates))
	}
	err = remote.Write(r, img, opts...)
	if finished != nil {
		<-finished
	}
	if err != nil {
		return ggcr.Hash{}, fmt.Errorf("push %s: %w", ref, explain(err))
	}
	return img.Digest()
}

// Pull returns the image at ref. Layers are fetched as they are read.
func Pull(ctx context.Context, ref string, auth Auth) (ggcr.Image, error) {
	r, err := auth.Parse(ref)
	if err != nil {
		return nil, err
	}
	img, err := remote.Image(r, auth.RemoteOptions(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, explain(err))
	}
	return img, nil
}

// Tags lists the tags of a repository such as 127.0.0.1:5000/team/app,
// sorted.
func Tags(ctx context.Context, repo string, auth Auth) ([]string, error) {
	r, err := auth.Parse(repo)
	if err != nil {
		return nil, err
	}
	tags, err := remote.List(r.Context(), auth.RemoteOptions(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("list tags of %s: %w", repo, explain(err))
	}
	sort.Strings(tags)
	return tags, nil
}

// Catalog lists the repositories of a registry (HOST:PORT) that auth may
// read, sorted.
func Catalog(ctx context.Context, registry string, auth Auth) ([]string, error) {
	var opts []name.Option
	if auth.Insecure {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(strings.TrimSuffix(registry, "/"), opts...)
	if err != nil {
		return nil, fmt.Errorf("registry %q: %w", registry, err)
	}
	repos, err := remote.Catalog(ctx, reg, auth.RemoteOptions(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("list repositories of %s: %w", registry, explain(err))
	}
	sort.Strings(repos)
	return repos, nil
}

// RepoTags is a repository and its tags, as List reports them.
type RepoTags struct {
	Repository string   `json:"repository"`
	Tags       []string `json:"tags"`
}

// List reports every readable repository of a registry with its tags
// (gantry image ls).
func List(ctx context.Context, registry string, auth Auth) ([]RepoTags, error) {
	repos, err := Catalog(ctx, registry, auth)
	if err != nil {
		return nil, err
	}
	out := make([]RepoTags, 0, len(repos))
	for _, repo := range repos {
		tags, err := Tags(ctx, strings.TrimSuffix(registry, "/")+"/"+repo, auth)
		if err != nil {
			return nil, err
		}
		out = append(out, RepoTags{Repository: repo, Tags: tags})
	}
	return out, nil
}

// Descriptor is a manifest, layer or config as Inspect reports it.
type Descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	Platform  string `json:"platform,omitempty"`
}

// Info describes an image or an image index (gantry image inspect).
type Info struct {
	Reference string `json:"reference"`
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType"`
	// Size is what a pull transfers: the manifest, the config and the
	// compressed layers. For an index, the index alone.
	Size int64 `json:"size"`

	// Set for an image.
	Platform string       `json:"platform,omitempty"`
	Created  time.Time    `json:"created,omitzero"`
	Config   *Config      `json:"config,omitempty"`
	Layers   []Descriptor `json:"layers,omitempty"`

	// Set for an index: the manifests it lists.
	Manifests []Descriptor `json:"manifests,omitempty"`
}

// Inspect describes the image or index at ref without pulling layers.
func Inspect(ctx context.Context, ref string, auth Auth) (*Info, error) {
	r, err := auth.Parse(ref)
	if err != nil {
		return nil, err
	}
	opts := auth.RemoteOptions(ctx)
	desc, err := remote.Get(r, opts...)
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", ref, explain(err))
	}
	info := &Info{Reference: ref, Digest: desc.Digest.String(), MediaType: string(desc.MediaType), Size: desc.Size}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, fmt.Errorf("inspect %s: %w", ref, err)
		}
		m, err := idx.IndexManifest()
		if err != nil {
			return nil, fmt.Errorf("inspect %s: %w", ref, err)
		}
		for _, d := range m.Manifests {
			info.Manifests = append(info.Manifests, describe(d))
		}
		return info, nil
	}
	img, err := desc.Image()
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", ref, err)
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", ref, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("inspect %s: read config: %w", ref, explain(err))
	}
	info.Size += m.Config.Size
	for _, l := range m.Layers {
		info.Layers = append(info.Layers, describe(l))
		info.Size += l.Size
	}
	info.Platform = cf.OS + "/" + cf.Architecture
	if cf.Variant != "" {
		info.Platform += "/" + cf.Variant
	}
	info.Created = cf.Created.Time
	c := Config{
		Entrypoint: cf.Config.Entrypoint,
		Cmd:        cf.Config.Cmd,
		Env:        cf.Config.Env,
		WorkingDir: cf.Config.WorkingDir,
		User:       cf.Config.User,
		Labels:     cf.Config.Labels,
	}
	for p := range cf.Config.ExposedPorts {
		c.ExposedPorts = append(c.ExposedPorts, p)
	}
	sort.Strings(c.ExposedPorts)
	info.Config = &c
	return info, nil
}

func describe(d ggcr.Descriptor) Descriptor {
	out := Descriptor{MediaType: string(d.MediaType), Digest: d.Digest.String(), Size: d.Size}
	if p := d.Platform; p != nil {
		out.Platform = p.OS + "/" + p.Architecture
		if p.Variant != "" {
			out.Platform += "/" + p.Variant
		}
	}
	return out
}

// Delete deletes a tag (team/app:v1) or a manifest (team/app@sha256:…)
// from the registry. Gantry's registry refuses to delete what a running
// App uses unless force is set.
func Delete(ctx context.Context, ref string, auth Auth, force bool) error {
	r, err := auth.Parse(ref)
	if err != nil {
		return err
	}
	repo := r.Context()
	rt, err := transport.NewWithContext(ctx, repo.Registry, authenticator(auth), auth.transport(), []string{repo.Scope(transport.DeleteScope)})
	if err != nil {
		return fmt.Errorf("delete %s: %w", ref, explain(err))
	}
	u := url.URL{Scheme: repo.Scheme(), Host: repo.RegistryStr(), Path: "/v2/" + repo.RepositoryStr() + "/manifests/" + r.Identifier()}
	if force {
		u.RawQuery = "force=true"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return fmt.Errorf("delete %s: %w", ref, err)
	}
	defer resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusOK, http.StatusAccepted); err != nil {
		return fmt.Errorf("delete %s: %w", ref, explain(err))
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}

// registryError is a registry's answer as its messages say it; the
// transport.Error stays underneath for errors.As.
type registryError struct {
	msg string
	err error
}

func (e *registryError) Error() string { return e.msg }
func (e *registryError) Unwrap() error { return e.err }

func authenticator(a Auth) authn.Authenticator {
	if a.Token == "" {
		return authn.Anonymous
	}
	return &authn.Basic{Username: userName, Password: a.Token}
}

// explain adds what to do next to the registry errors a user meets most.
func explain(err error) error {
	var terr *transport.Error
	if errors.As(err, &terr) {
		if direct, ok := err.(*transport.Error); ok && len(direct.Errors) > 0 {
			// The registry's messages, without the Go rendering of each
			// one's detail (map[...]) that transport.Error adds; its code
			// where it gave no message.
			msgs := make([]string, 0, len(direct.Errors))
			for _, d := range direct.Errors {
				m := d.Message
				if m == "" {
					m = string(d.Code)
				}
				msgs = append(msgs, m)
			}
			err = &registryError{msg: strings.Join(msgs, "; "), err: err}
		}
		switch terr.StatusCode {
		case http.StatusUnauthorized:
			return fmt.Errorf("%w (log in again: the token is missing, expired or revoked)", err)
		case http.StatusForbidden:
			return fmt.Errorf("%w (ask an admin for the role this needs)", err)
		}
	}
	var oerr *net.OpError
	if errors.As(err, &oerr) && oerr.Op == "dial" {
		return fmt.Errorf("%w (is the registry running and the address right?)", err)
	}
	return err
}
