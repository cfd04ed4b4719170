package image

import (
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"testing"

	ggcrv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
)

// `docker buildx build -o type=oci,dest=app.tar .` (provenance on by
// default) writes an OCI archive whose index.json lists one image index
// holding the image and an attestation manifest (platform unknown/unknown),
// and no manifest.json. gantry image push / import of it failed: "the
// layout holds 0 images".
func TestOCIArchiveWithANestedIndex(t *testing.T) {
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	att, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	inner := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: img, Descriptor: ggcrv1.Descriptor{Platform: &ggcrv1.Platform{OS: "linux", Architecture: goruntime.GOARCH}}},
		mutate.IndexAddendum{Add: att, Descriptor: ggcrv1.Descriptor{
			Platform:    &ggcrv1.Platform{OS: "unknown", Architecture: "unknown"},
			Annotations: map[string]string{"vnd.docker.reference.type": "attestation-manifest"},
		}},
	)
	dir := t.TempDir()
	if _, err := layout.Write(dir, mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: inner})); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "oci.tar")
	if b, err := exec.Command("tar", "-C", dir, "-cf", src, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, b)
	}
	got, err := LoadArchive(src, t.TempDir())
	if err != nil {
		t.Fatalf("push of a buildx OCI archive: %v", err)
	}
	if d, _ := got.Digest(); d != mustDigest(t, img) {
		t.Errorf("took %s, want the linux/%s image", d, goruntime.GOARCH)
	}
}
