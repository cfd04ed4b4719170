package image

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A GNU tar made with -S (sparse) imported without error, but its layer
// kept the sparse type with no map, which Go's tar reader, and so
// containerd, could not read: the image failed where a node pulled it.
// The file goes into the layer as a regular one, holes filled.
func TestImportASparseTarball(t *testing.T) {
	root := makeRoot(t)
	f, err := os.Create(filepath.Join(root, "etc", "lastlog"))
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("HEAD")
	f.Truncate(1 << 20)
	f.WriteAt([]byte("TAIL"), 1<<20-4)
	f.Close()
	src := filepath.Join(t.TempDir(), "sparse.tar")
	if b, err := exec.Command("tar", "-C", root, "-cSf", src, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, b)
	}
	img, err := Import(context.Background(), src, t.TempDir(), Config{Cmd: []string{"/bin/busybox"}})
	if err != nil {
		t.Fatal(err)
	}
	got := layerEntries(t, img)["etc/lastlog"]
	if got.typ != tar.TypeReg || len(got.content) != 1<<20 || !strings.HasPrefix(got.content, "HEAD") || !strings.HasSuffix(got.content, "TAIL") {
		t.Errorf("etc/lastlog in the layer: type %q, %d bytes", got.typ, len(got.content))
	}
}

// Hard links a node cannot make (to a name not in the tarball, to one
// that comes later, to a directory) imported without error and failed
// where a node unpacked the layer. They are refused at import, naming
// the entry.
func TestImportRefusesHardLinksANodeCannotMake(t *testing.T) {
	type entry struct {
		name, link string
		typ        byte
	}
	for _, tc := range []struct {
		name    string
		entries []entry
		bad     bool
	}{
		{"to a file before it", []entry{{"bin/sh", "", tar.TypeReg}, {"bin/h", "bin/sh", tar.TypeLink}}, false},
		{"to a link to a file", []entry{{"bin/sh", "", tar.TypeReg}, {"bin/h", "bin/sh", tar.TypeLink}, {"bin/i", "bin/h", tar.TypeLink}}, false},
		{"to a symbolic link (GNU tar links those too)", []entry{{"bin/sh", "busybox", tar.TypeSymlink}, {"bin/h", "bin/sh", tar.TypeLink}}, false},
		{"to nothing", []entry{{"bin/h", "nope", tar.TypeLink}}, true},
		{"to a file after it", []entry{{"bin/h", "bin/sh", tar.TypeLink}, {"bin/sh", "", tar.TypeReg}}, true},
		{"to a directory", []entry{{"etc", "", tar.TypeDir}, {"bin/h", "etc", tar.TypeLink}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			for _, e := range tc.entries {
				h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o755, ModTime: time.Unix(0, 0)}
				if e.typ == tar.TypeReg {
					h.Size = 1
				}
				if err := tw.WriteHeader(h); err != nil {
					t.Fatal(err)
				}
				if e.typ == tar.TypeReg {
					tw.Write([]byte("x"))
				}
			}
			tw.Close()
			src := filepath.Join(t.TempDir(), "links.tar")
			if err := os.WriteFile(src, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Import(context.Background(), src, t.TempDir(), Config{Cmd: []string{"/bin/sh"}})
			if tc.bad && (err == nil || !strings.Contains(err.Error(), `"bin/h" is a hard link`)) {
				t.Errorf("imported: %v; want the link refused", err)
			}
			if !tc.bad && err != nil {
				t.Errorf("refused: %v", err)
			}
		})
	}
}

// A root filesystem with a manifest.json at its top (a web app's) was
// taken for a docker save archive and could not be imported; a tarball
// cut short was said to be no tarball at all.
func TestImportTellsARootFilesystemFromAnArchive(t *testing.T) {
	root := makeRoot(t)
	if err := os.WriteFile(filepath.Join(root, "manifest.json"), []byte(`{"name": "my-web-app", "start_url": "/"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	src := writeTar(t, root, "")
	if _, err := Import(context.Background(), src, t.TempDir(), Config{Cmd: []string{"/bin/busybox"}}); err != nil {
		t.Fatalf("a root filesystem holding a web app's manifest.json: %v", err)
	}
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(t.TempDir(), "cut.tar")
	if err := os.WriteFile(cut, b[:len(b)/2+100], 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Import(context.Background(), cut, t.TempDir(), Config{})
	if err == nil || !strings.Contains(err.Error(), "truncated or corrupt") {
		t.Errorf("a tarball cut short: %v", err)
	}
}
