package main

import (
	"archive/tar"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
)

// `gantry image push app.tar app:v3` is documented (guide.md, the
// command's Short) to take an OCI archive (skopeo copy … oci-archive:),
// i.e. a tar of an OCI image layout. loadLocalImage must read it.
func TestPushReadsAnOCIArchive(t *testing.T) {
	img, err := random.Image(128, 1)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "app.tar")
	f, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(dir, path)
		if rel == "." {
			return nil
		}
		fi, _ := d.Info()
		h, _ := tar.FileInfoHeader(fi, "")
		h.Name = filepath.ToSlash(rel)
		tw.WriteHeader(h)
		if fi.Mode().IsRegular() {
			src, _ := os.Open(path)
			io.Copy(tw, src)
			src.Close()
		}
		return nil
	})
	tw.Close()
	f.Close()

	got, err := loadLocalImage(archive, t.TempDir())
	if err != nil {
		t.Fatalf("push of an OCI archive: %v", err)
	}
	want, _ := img.Digest()
	if d, _ := got.Digest(); d != want {
		t.Fatalf("digest %s, want %s", d, want)
	}
}
