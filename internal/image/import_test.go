package image

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/klauspost/compress/gzip"
	"golang.org/x/sys/unix"
)

// entry is what a test expects of one file in a layer.
type entry struct {
	typ      byte
	mode     int64
	uid, gid int
	link     string
	content  string
	xattr    string
}

// layerEntries reads the single layer of img.
func layerEntries(t *testing.T, img ggcr.Image) map[string]entry {
	t.Helper()
	ls, err := img.Layers()
	if err != nil || len(ls) != 1 {
		t.Fatalf("layers %v, %v", ls, err)
	}
	rc, err := ls[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out := map[string]entry{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		out[h.Name] = entry{typ: h.Typeflag, mode: h.Mode & 0o7777, uid: h.Uid, gid: h.Gid, link: h.Linkname, content: string(b),
			xattr: h.PAXRecords["SCHILY.xattr.security.capability"]}
	}
	return out
}

// makeRoot builds a small root filesystem.
func makeRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "bin"), 0o755))
	must(os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	must(os.MkdirAll(filepath.Join(root, "tmp"), 0o755))
	must(os.Chmod(filepath.Join(root, "tmp"), 0o777|os.ModeSticky))
	must(os.WriteFile(filepath.Join(root, "bin/busybox"), []byte("#!binary"), 0o755))
	must(os.Symlink("busybox", filepath.Join(root, "bin/sh")))
	must(os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("gantry\n"), 0o644))
	must(os.Link(filepath.Join(root, "etc/hostname"), filepath.Join(root, "etc/hostname.bak")))
	must(os.WriteFile(filepath.Join(root, "etc/shadow"), []byte("root:*:1::::::\n"), 0o640))
	if os.Geteuid() == 0 {
		must(os.Lchown(filepath.Join(root, "etc/shadow"), 0, 42))
	}
	return root
}

func TestImportARootFilesystemDirectory(t *testing.T) {
	root := makeRoot(t)
	capSet := false
	if os.Geteuid() == 0 {
		// A file capability, as ping has in a Debian root (cap_net_raw+ep).
		v := []byte{0, 0, 0, 2, 0, 0x20, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
		capSet = unix.Lsetxattr(filepath.Join(root, "bin/busybox"), "security.capability", v, 0) == nil
	}
	img, err := Import(context.Background(), root, t.TempDir(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("image is not consistent: %v", err)
	}
	got := layerEntries(t, img)
	want := map[string]entry{
		"bin/":             {typ: tar.TypeDir, mode: 0o755},
		"bin/busybox":      {typ: tar.TypeReg, mode: 0o755, content: "#!binary"},
		"bin/sh":           {typ: tar.TypeSymlink, mode: 0o777, link: "busybox"},
		"etc/":             {typ: tar.TypeDir, mode: 0o755},
		"etc/hostname":     {typ: tar.TypeReg, mode: 0o644, content: "gantry\n"},
		"etc/hostname.bak": {typ: tar.TypeLink, mode: 0o644, link: "etc/hostname"},
		"etc/shadow":       {typ: tar.TypeReg, mode: 0o640, content: "root:*:1::::::\n"},
		"tmp/":             {typ: tar.TypeDir, mode: 0o1777},
	}
	if os.Geteuid() == 0 {
		e := want["etc/shadow"]
		e.gid = 42
		want["etc/shadow"] = e
	}
	if len(got) != len(want) {
		t.Errorf("entries %v", got)
	}
	uid, gid := os.Geteuid(), os.Getegid()
	for n, w := range want {
		g, ok := got[n]
		if !ok {
			t.Errorf("%s missing", n)
			continue
		}
		if os.Geteuid() != 0 || n != "etc/shadow" {
			w.uid, w.gid = uid, gid
		}
		w.xattr = g.xattr
		if g != w {
			t.Errorf("%s = %+v, want %+v", n, g, w)
		}
	}
	if capSet && got["bin/busybox"].xattr == "" {
		t.Error("the file capability of bin/busybox was lost")
	}
	cf, _ := img.ConfigFile()
	if strings.Join(cf.Config.Cmd, " ") != "/bin/sh" {
		t.Errorf("cmd %v, want /bin/sh for a root with a shell", cf.Config.Cmd)
	}
	t.Run("the same tree imports to the same digest", func(t *testing.T) {
		again, err := Import(context.Background(), root, t.TempDir(), Config{})
		if err != nil {
			t.Fatal(err)
		}
		a, _ := img.Digest()
		b, _ := again.Digest()
		if a != b {
			t.Errorf("%s != %s", a, b)
		}
	})
	t.Run("the imported image pushes and pulls back whole", func(t *testing.T) {
		host := startRegistry(t, nil)
		d, err := Push(context.Background(), img, host+"/library/debian:test", auth, nil)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Pull(context.Background(), host+"/library/debian:test", auth)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(back); err != nil {
			t.Fatal(err)
		}
		if bd, _ := back.Digest(); bd != d {
			t.Errorf("pulled %s, pushed %s", bd, d)
		}
	})
}

// writeTar writes a tarball of root (made with tar(1), as a user would)
// compressed with compressor ("" for none).
func writeTar(t *testing.T, root, compressor string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "root.tar")
	cmd := exec.Command("tar", "-C", root, "-cf", out, ".")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, b)
	}
	if compressor != "" {
		if _, err := exec.LookPath(compressor); err != nil {
			t.Skipf("%s not installed", compressor)
		}
		if b, err := exec.Command(compressor, "-f", out).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", compressor, err, b)
		}
		matches, _ := filepath.Glob(out + ".*")
		if len(matches) != 1 {
			t.Fatalf("compressed file: %v", matches)
		}
		out = matches[0]
	}
	return out
}

func TestImportARootFilesystemTarball(t *testing.T) {
	root := makeRoot(t)
	for _, c := range []string{"", "gzip", "bzip2", "zstd"} {
		t.Run("compressed with "+c+" it imports like the directory", func(t *testing.T) {
			src := writeTar(t, root, c)
			img, err := Import(context.Background(), src, t.TempDir(), Config{Cmd: []string{"/bin/busybox"}})
			if err != nil {
				t.Fatal(err)
			}
			got := layerEntries(t, img)
			// tar(1) picks either name as the hard link's target.
			a, b := got["etc/hostname"], got["etc/hostname.bak"]
			linked := (a.content == "gantry\n" && b.typ == tar.TypeLink && b.link == "etc/hostname") ||
				(b.content == "gantry\n" && a.typ == tar.TypeLink && a.link == "etc/hostname.bak")
			if !linked || got["bin/sh"].link != "busybox" || got["tmp/"].mode != 0o1777 {
				t.Errorf("entries %v", got)
			}
			for n := range got {
				if strings.HasPrefix(n, "./") || strings.HasPrefix(n, "/") {
					t.Errorf("entry %q is not relative and clean", n)
				}
			}
			if cf, _ := img.ConfigFile(); strings.Join(cf.Config.Cmd, " ") != "/bin/busybox" {
				t.Errorf("cmd %v", cf.Config.Cmd)
			}
		})
	}
	t.Run("an xz tarball is refused with advice", func(t *testing.T) {
		src := writeTar(t, root, "xz")
		_, err := Import(context.Background(), src, t.TempDir(), Config{})
		if err == nil || !strings.Contains(err.Error(), "xz -d") {
			t.Errorf("err %v", err)
		}
	})
	t.Run("a tarball that climbs out of the root is refused", func(t *testing.T) {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		tw := tar.NewWriter(zw)
		_ = tw.WriteHeader(&tar.Header{Name: "../../etc/passwd", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)})
		_, _ = tw.Write([]byte("x"))
		tw.Close()
		zw.Close()
		src := filepath.Join(t.TempDir(), "evil.tar.gz")
		if err := os.WriteFile(src, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Import(context.Background(), src, t.TempDir(), Config{})
		if err == nil || !strings.Contains(err.Error(), "outside the root") {
			t.Errorf("err %v", err)
		}
	})
}

func TestImportImageArchives(t *testing.T) {
	img, err := random.Image(4096, 2)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.ConfigName()
	t.Run("a docker save archive keeps its image", func(t *testing.T) {
		src := filepath.Join(t.TempDir(), "saved.tar")
		tag, _ := name.NewTag("example.com/x/y:1")
		if err := tarball.WriteToFile(src, tag, img); err != nil {
			t.Fatal(err)
		}
		got, err := Import(context.Background(), src, t.TempDir(), Config{})
		if err != nil {
			t.Fatal(err)
		}
		if c, _ := got.ConfigName(); c != want {
			t.Errorf("config %s, want %s", c, want)
		}
	})
	t.Run("an OCI archive keeps its image", func(t *testing.T) {
		dir := t.TempDir()
		lp, err := layout.Write(dir, empty.Index)
		if err != nil {
			t.Fatal(err)
		}
		if err := lp.AppendImage(img); err != nil {
			t.Fatal(err)
		}
		src := filepath.Join(t.TempDir(), "oci.tar")
		if b, err := exec.Command("tar", "-C", dir, "-cf", src, ".").CombinedOutput(); err != nil {
			t.Fatalf("tar: %v %s", err, b)
		}
		got, err := Import(context.Background(), src, t.TempDir(), Config{})
		if err != nil {
			t.Fatal(err)
		}
		if d, _ := got.Digest(); d != mustDigest(t, img) {
			t.Errorf("digest %s", d)
		}
	})
}

func mustDigest(t *testing.T, img ggcr.Image) ggcr.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestFileLayerDigestsMatchItsBytes(t *testing.T) {
	l, _, err := writeLayer(t.TempDir(), func(tw *tar.Writer) (bool, error) {
		return false, tw.WriteHeader(&tar.Header{Name: "x/", Typeflag: tar.TypeDir, Mode: 0o755})
	})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(l.path)
	if got := fmt.Sprintf("sha256:%x", sha256.Sum256(b)); got != l.digest.String() || int64(len(b)) != l.size {
		t.Errorf("digest %s size %d, file %s size %d", l.digest, l.size, got, len(b))
	}
	rc, _ := l.Uncompressed()
	raw, _ := io.ReadAll(rc)
	rc.Close()
	if got := fmt.Sprintf("sha256:%x", sha256.Sum256(raw)); got != l.diffID.String() {
		t.Errorf("diffID %s, content %s", l.diffID, got)
	}
}
