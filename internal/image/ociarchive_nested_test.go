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

// gantry image push DIR took the first entry of an OCI layout's
// index.json: a buildx layout (an index of the image and its
// attestation) failed with "unexpected media type", and one of two
// platforms, the other listed first, pushed the wrong one silently. A
// layout directory is read as an archive of it is.
func TestOCILayoutDirectoryChoosesAsAnArchiveDoes(t *testing.T) {
	mine, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	other, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	otherArch := "arm64"
	if goruntime.GOARCH == "arm64" {
		otherArch = "amd64"
	}
	platforms := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: other, Descriptor: ggcrv1.Descriptor{Platform: &ggcrv1.Platform{OS: "linux", Architecture: otherArch}}},
		mutate.IndexAddendum{Add: mine, Descriptor: ggcrv1.Descriptor{Platform: &ggcrv1.Platform{OS: "linux", Architecture: goruntime.GOARCH}}},
	)
	for name, idx := range map[string]ggcrv1.ImageIndex{
		"two platforms, the other first": platforms,
		"an index in the index (buildx)": mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: platforms}),
		// skopeo copy of one image to oci:dir:v1 and oci:dir:latest.
		"one image under two tags": mutate.AppendManifests(empty.Index,
			mutate.IndexAddendum{Add: mine, Descriptor: ggcrv1.Descriptor{Annotations: map[string]string{"org.opencontainers.image.ref.name": "v1"}}},
			mutate.IndexAddendum{Add: mine, Descriptor: ggcrv1.Descriptor{Annotations: map[string]string{"org.opencontainers.image.ref.name": "latest"}}}),
	} {
		dir := t.TempDir()
		if _, err := layout.Write(dir, idx); err != nil {
			t.Fatal(err)
		}
		got, err := LoadLayout(dir)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if d, _ := got.Digest(); d != mustDigest(t, mine) {
			t.Errorf("%s: took %s, want the linux/%s image", name, d, goruntime.GOARCH)
		}
	}
}
