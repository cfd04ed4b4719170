package registry

import (
	"context"
	"encoding/json"
	"io"
	"testing"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestContainerdResolverPullsWithAToken drives containerd's own registry
// client, the one Gantry's agent pulls with, through the token flow (it
// tries the OAuth2 password grant first) and fetches a manifest and a
// layer.
func TestContainerdResolverPullsWithAToken(t *testing.T) {
	tr := newTestRegistry(t, nil)
	img := mustRandom(t)
	tr.push(t, img, "team/app:v1", aliceToken)
	want, _ := img.Digest()

	authorizer := docker.NewDockerAuthorizer(docker.WithAuthCreds(func(host string) (string, string, error) {
		return "agent", bobToken, nil
	}))
	resolver := docker.NewResolver(docker.ResolverOptions{Hosts: docker.ConfigureDefaultRegistries(
		docker.WithAuthorizer(authorizer),
		docker.WithPlainHTTP(docker.MatchAllHosts),
	)})
	ctx := context.Background()
	ref := tr.host + "/team/app:v1"
	name, desc, err := resolver.Resolve(ctx, ref)
	if err != nil {
		t.Fatalf("resolve %s: %v", ref, err)
	}
	if desc.Digest.String() != want.String() {
		t.Fatalf("resolved %s to %s, want %s", name, desc.Digest, want)
	}
	fetcher, err := resolver.Fetcher(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := fetcher.Fetch(ctx, desc)
	if err != nil {
		t.Fatalf("fetch manifest: %v", err)
	}
	var m ocispec.Manifest
	err = json.NewDecoder(rc).Decode(&m)
	rc.Close()
	if err != nil || len(m.Layers) == 0 {
		t.Fatalf("manifest %+v: %v", m, err)
	}
	rc, err = fetcher.Fetch(ctx, m.Layers[0])
	if err != nil {
		t.Fatalf("fetch layer: %v", err)
	}
	n, err := io.Copy(io.Discard, rc)
	rc.Close()
	if err != nil || n != m.Layers[0].Size {
		t.Fatalf("read %d of %d bytes: %v", n, m.Layers[0].Size, err)
	}
}
