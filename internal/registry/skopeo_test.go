package registry

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/gantry-dev/gantry/internal/image"
)

// TestSkopeoCopiesAnOCILayoutInAndOutByteIdentical pushes an OCI image
// layout into the registry with Debian's skopeo, which takes the Docker
// token flow, copies it back out, and compares every byte.
func TestSkopeoCopiesAnOCILayoutInAndOutByteIdentical(t *testing.T) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		t.Skip("skopeo is not installed (Debian package skopeo; scripts/setup.sh installs it)")
	}
	tr := newTestRegistry(t, nil)
	img, err := image.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "src")
	lp, err := layout.Write(src, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{ocispec.AnnotationRefName: "v1"})); err != nil {
		t.Fatal(err)
	}

	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(skopeo, args...)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir()) // no stray auth files
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("skopeo %v: %v\n%s", args, err, out)
		}
	}
	dst := "docker://" + tr.host + "/team/skopeo:v1"
	run("copy", "--preserve-digests", "--dest-tls-verify=false", "--dest-creds", "gantry:"+aliceToken, "oci:"+src+":v1", dst)
	back := filepath.Join(t.TempDir(), "back")
	run("copy", "--preserve-digests", "--src-tls-verify=false", "--src-creds", "gantry:"+bobToken, dst, "oci:"+back+":v1")

	want, _ := img.Digest()
	if got, err := remote.Head(tr.ref(t, "team/skopeo:v1"), basic(bobToken)); err != nil || got.Digest != want {
		t.Fatalf("registry holds %v (%v), want %s", got, err, want)
	}
	// Same manifest in both index.json files, and every blob the same.
	if a, b := manifestOf(t, src), manifestOf(t, back); a != b {
		t.Fatalf("manifest %s came back as %s", a, b)
	}
	blobs := func(dir string) map[string][]byte {
		out := map[string][]byte{}
		err := filepath.WalkDir(filepath.Join(dir, "blobs"), func(p string, e os.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			rel, _ := filepath.Rel(dir, p)
			out[rel] = b
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	in, out := blobs(src), blobs(back)
	if len(in) != len(out) {
		t.Errorf("%d blobs in, %d out", len(in), len(out))
	}
	for name, b := range in {
		if !bytes.Equal(out[name], b) {
			t.Errorf("blob %s differs or is missing after the round trip", name)
		}
	}
}

func manifestOf(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil || len(idx.Manifests) != 1 {
		t.Fatalf("index.json %s: %v", b, err)
	}
	return idx.Manifests[0].Digest.String()
}
