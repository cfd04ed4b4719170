package image

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"encoding/json"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/klauspost/compress/gzip"
)

// `gantry image import /tmp/root-link` where the argument is a symbolic
// link to a debootstrap directory (os.Stat says directory) must import
// the tree it leads to, not report success with an empty layer.
func TestImportSymlinkToRootDir(t *testing.T) {
	root := makeRoot(t)
	link := filepath.Join(t.TempDir(), "root-link")
	if err := os.Symlink(root, link); err != nil {
		t.Fatal(err)
	}
	img, err := Import(context.Background(), link, t.TempDir(), Config{})
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	got := layerEntries(t, img)
	if _, ok := got["etc/hostname"]; !ok {
		t.Fatalf("import of a symlink to a root directory succeeded with %d entries (no etc/hostname): %v", len(got), got)
	}
}

// `docker save app | gzip > app.tar.gz` is an image archive; import
// must not take it as a root filesystem and make an image whose files
// are manifest.json and layer tarballs.
func TestImportGzippedDockerSave(t *testing.T) {
	src, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference("example.com/app:v1")
	var tb bytes.Buffer
	if err := tarball.Write(ref, src, &tb); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "app.tar.gz")
	f, _ := os.Create(p)
	zw := gzip.NewWriter(f)
	zw.Write(tb.Bytes())
	zw.Close()
	f.Close()

	img, err := Import(context.Background(), p, t.TempDir(), Config{})
	if err != nil {
		return // refusing it, or reading it as an image archive, is fine
	}
	want, _ := src.Digest()
	if got, _ := img.Digest(); got == want {
		return
	}
	ls, _ := img.Layers()
	if len(ls) == 1 {
		rc, _ := ls[0].Uncompressed()
		defer rc.Close()
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			if h.Name == "manifest.json" {
				t.Fatalf("a gzipped docker save archive was imported as a root filesystem holding manifest.json")
			}
		}
	}
}

// `docker save` of Docker's containerd image store (the default of
// Docker 29) writes an OCI layout whose index.json lists an image index,
// plus a manifest.json for the single image. import must take it (push
// of the same file does, through manifest.json).
func TestImportDockerSaveWithNestedIndex(t *testing.T) {
	src, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	inner := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: src,
		Descriptor: ggcrv1.Descriptor{Platform: &ggcrv1.Platform{OS: "linux", Architecture: goarch()}}})
	dir := t.TempDir()
	if _, err := layout.Write(dir, mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: inner})); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "save.tar")
	f, _ := os.Create(p)
	tw := tar.NewWriter(f)
	filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		rel, _ := filepath.Rel(dir, path)
		if rel == "." || fi.IsDir() {
			return nil
		}
		b, _ := os.ReadFile(path)
		tw.WriteHeader(&tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg})
		tw.Write(b)
		return nil
	})
	// manifest.json as docker save writes it, pointing into blobs/.
	cfgName, _ := src.ConfigName()
	ls, _ := src.Layers()
	var layers []string
	for _, l := range ls {
		d, _ := l.Digest()
		layers = append(layers, "blobs/sha256/"+d.Hex)
	}
	m, _ := json.Marshal([]map[string]any{{"Config": "blobs/sha256/" + cfgName.Hex, "RepoTags": []string{"app:v1"}, "Layers": layers}})
	tw.WriteHeader(&tar.Header{Name: "manifest.json", Mode: 0o644, Size: int64(len(m)), Typeflag: tar.TypeReg})
	tw.Write(m)
	tw.Close()
	f.Close()

	if _, err := tarball.ImageFromPath(p, nil); err != nil {
		t.Fatalf("the archive is not a valid docker save archive: %v", err)
	}
	if _, err := Import(context.Background(), p, t.TempDir(), Config{}); err != nil {
		t.Fatalf("import of a docker save archive with a nested index: %v", err)
	}
}

// A zero-byte file (a failed download, a wrong path) is no tarball:
// import must say so rather than push an image with no files.
func TestImportEmptyFileIsAnError(t *testing.T) {
	p := filepath.Join(t.TempDir(), "debian.tar")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Import(context.Background(), p, t.TempDir(), Config{}); err == nil {
		t.Fatal("import of a zero-byte file succeeded with an empty image")
	}
}
