package image

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/gantry-dev/gantry/internal/registry"
	"github.com/gantry-dev/gantry/internal/registry/registrytest"
)

const testToken = "image-test-token"

var oneToken = registrytest.OneToken{Token: testToken, User: "tester"}

// startRegistry runs Gantry's registry on loopback and returns its
// HOST:PORT.
func startRegistry(t *testing.T, canDelete func(ctx context.Context, repo, ref string) error) string {
	t.Helper()
	reg, err := registry.New(context.Background(), registry.Config{
		DataDir: t.TempDir(), Authenticator: oneToken, Authorizer: oneToken, CanDelete: canDelete,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg.Handler())
	t.Cleanup(func() { srv.Close(); reg.Close() })
	return strings.TrimPrefix(srv.URL, "http://")
}

var auth = Auth{Token: testToken}

func TestPushPullAndInspect(t *testing.T) {
	host := startRegistry(t, nil)
	ctx := context.Background()
	img, err := random.Image(64<<10, 3)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu        sync.Mutex
		lastDone  int64
		lastTotal int64
		calls     int
	)
	ref := host + "/team/app:v1"
	d, err := Push(ctx, img, ref, auth, func(done, total int64) {
		mu.Lock()
		defer mu.Unlock()
		if done < lastDone {
			t.Errorf("progress went back from %d to %d", lastDone, done)
		}
		lastDone, lastTotal, calls = done, total, calls+1
	})
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := img.Digest(); d != want {
		t.Errorf("Push returned %s, want %s", d, want)
	}
	if calls == 0 || lastDone != lastTotal || lastTotal < 3*64<<10 {
		t.Errorf("progress: %d calls, last %d/%d", calls, lastDone, lastTotal)
	}

	t.Run("pull returns the same image, whole", func(t *testing.T) {
		got, err := Pull(ctx, ref, auth)
		if err != nil {
			t.Fatal(err)
		}
		if gd, _ := got.Digest(); gd != d {
			t.Errorf("pulled %s, pushed %s", gd, d)
		}
		if err := validate.Image(got); err != nil {
			t.Error(err)
		}
	})
	t.Run("inspect describes the image", func(t *testing.T) {
		info, err := Inspect(ctx, ref, auth)
		if err != nil {
			t.Fatal(err)
		}
		if info.Digest != d.String() || len(info.Layers) != 3 || info.Config == nil || info.Size < 3*64<<10 {
			t.Errorf("info %+v", info)
		}
	})
	t.Run("inspect lists an index's manifests", func(t *testing.T) {
		idx := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: img, Descriptor: ggcr.Descriptor{
			Platform: &ggcr.Platform{OS: "linux", Architecture: "arm64"}}})
		r, _ := auth.Parse(host + "/team/app:multi")
		if err := remote.WriteIndex(r, idx, auth.RemoteOptions(ctx)...); err != nil {
			t.Fatal(err)
		}
		info, err := Inspect(ctx, host+"/team/app:multi", auth)
		if err != nil {
			t.Fatal(err)
		}
		if len(info.Manifests) != 1 || info.Manifests[0].Digest != d.String() || info.Manifests[0].Platform != "linux/arm64" {
			t.Errorf("info %+v", info)
		}
	})
	t.Run("tags, catalog and list", func(t *testing.T) {
		if _, err := Push(ctx, img, host+"/team/app:v2", auth, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := Push(ctx, img, host+"/other/db:1", auth, nil); err != nil {
			t.Fatal(err)
		}
		tags, err := Tags(ctx, host+"/team/app", auth)
		if err != nil || strings.Join(tags, ",") != "multi,v1,v2" {
			t.Errorf("tags %v, %v", tags, err)
		}
		repos, err := Catalog(ctx, host, auth)
		if err != nil || strings.Join(repos, ",") != "other/db,team/app" {
			t.Errorf("catalog %v, %v", repos, err)
		}
		list, err := List(ctx, host, auth)
		if err != nil || len(list) != 2 || list[1].Repository != "team/app" || len(list[1].Tags) != 3 {
			t.Errorf("list %+v, %v", list, err)
		}
	})
	t.Run("a wrong token fails with advice", func(t *testing.T) {
		_, err := Pull(ctx, ref, Auth{Token: "wrong"})
		if err == nil || !strings.Contains(err.Error(), "log in again") {
			t.Errorf("err %v", err)
		}
	})
}

func TestDelete(t *testing.T) {
	host := startRegistry(t, func(_ context.Context, repo, ref string) error {
		if ref == "inuse" {
			return errors.New("App team/web runs it")
		}
		return nil
	})
	ctx := context.Background()
	img, _ := random.Image(1024, 1)
	for _, tag := range []string{"v1", "inuse"} {
		if _, err := Push(ctx, img, host+"/team/app:"+tag, auth, nil); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("a tag is deleted", func(t *testing.T) {
		if err := Delete(ctx, host+"/team/app:v1", auth, false); err != nil {
			t.Fatal(err)
		}
		if _, err := Inspect(ctx, host+"/team/app:v1", auth); err == nil {
			t.Error("tag still there")
		}
	})
	t.Run("a tag in use is refused unless forced", func(t *testing.T) {
		err := Delete(ctx, host+"/team/app:inuse", auth, false)
		if err == nil || !strings.Contains(err.Error(), "App team/web runs it") {
			t.Fatalf("err %v", err)
		}
		if err := Delete(ctx, host+"/team/app:inuse", auth, true); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a manifest is deleted by digest", func(t *testing.T) {
		if _, err := Push(ctx, img, host+"/team/app:v3", auth, nil); err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		if err := Delete(ctx, host+"/team/app@"+d.String(), auth, false); err != nil {
			t.Fatal(err)
		}
		if _, err := Inspect(ctx, host+"/team/app:v3", auth); err == nil {
			t.Error("tag of a deleted manifest still resolves")
		}
	})
}

func TestSeedPushesBusybox(t *testing.T) {
	host := startRegistry(t, nil)
	ref, d, err := Seed(context.Background(), host, auth, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ref != host+"/library/busybox:latest" {
		t.Errorf("ref %s", ref)
	}
	info, err := Inspect(context.Background(), ref, auth)
	if err != nil {
		t.Fatal(err)
	}
	if info.Digest != d.String() || strings.Join(info.Config.Cmd, " ") != "/bin/sh" || info.Platform != "linux/"+goarch() {
		t.Errorf("info %+v", info)
	}
}

func TestReference(t *testing.T) {
	tests := []struct{ ref, want string }{
		{"hello:v1", "127.0.0.1:5000/team/hello:v1"},
		{"hello", "127.0.0.1:5000/team/hello"},
		{"library/busybox", "127.0.0.1:5000/library/busybox"},
		{"hello@sha256:abc", "127.0.0.1:5000/team/hello@sha256:abc"},
		{"registry.example.com/x/y:1", "registry.example.com/x/y:1"},
		{"localhost:5000/x/y", "localhost:5000/x/y"},
		{"localhost/x", "localhost/x"},
	}
	for _, tt := range tests {
		t.Run(tt.ref+" resolves to "+tt.want, func(t *testing.T) {
			if got := Reference("127.0.0.1:5000", "team", tt.ref); got != tt.want {
				t.Errorf("got %s", got)
			}
		})
	}
	t.Run("a reference without a registry cannot be pushed", func(t *testing.T) {
		if _, err := auth.Parse("team/app:v1"); err == nil {
			t.Error("parsed")
		}
	})
}
