package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// Import makes an image out of a base operating system without a
// registry or a daemon, for `gantry image import`. src is one of:
//
//   - a directory holding a root filesystem, such as debootstrap makes;
//   - a tarball of one (plain, gzip, bzip2 or zstd), such as
//     `docker export` or `tar -C root -c .` makes;
//   - an image archive, from `docker save` or an OCI image layout in a
//     tar (`skopeo copy … oci-archive:`), taken as it is.
//
// A root filesystem becomes one gzip-compressed layer that keeps modes,
// owners, times, hard links, device nodes and file capabilities; cfg
// gives the image its configuration (with /bin/sh as the command when
// the root has one and cfg names none). The layer file is written into
// workDir, which must outlive every use of the image (its push).
func Import(ctx context.Context, src, workDir string, cfg Config) (ggcr.Image, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	if fi.IsDir() {
		// A symbolic link to the root is the root: the walk would not
		// go into it, and the image would be empty.
		root, err := filepath.EvalSymlinks(src)
		if err != nil {
			return nil, fmt.Errorf("import: %w", err)
		}
		return importTree(ctx, workDir, cfg, func(tw *tar.Writer) (bool, error) { return tarDir(ctx, root, tw) })
	}
	kind, compressed, err := sniff(src)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", src, err)
	}
	if kind != "rootfs" {
		return loadArchive(src, workDir, kind, compressed)
	}
	return importTree(ctx, workDir, cfg, func(tw *tar.Writer) (bool, error) {
		f, err := os.Open(src)
		if err != nil {
			return false, err
		}
		defer f.Close()
		r, err := decompress(bufio.NewReaderSize(f, 1<<20))
		if err != nil {
			return false, fmt.Errorf("%s: %w", src, err)
		}
		if c, ok := r.(io.Closer); ok {
			defer c.Close() // a zstd decoder's goroutines
		}
		return retar(ctx, r, tw)
	})
}

// importTree writes one layer with fill and makes the image.
func importTree(ctx context.Context, workDir string, cfg Config, fill func(*tar.Writer) (bool, error)) (ggcr.Image, error) {
	l, hasShell, err := writeLayer(workDir, fill)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if cfg.Entrypoint == nil && cfg.Cmd == nil && hasShell {
		cfg.Cmd = []string{"/bin/sh"}
	}
	return FromLayers(cfg, l)
}

// fileLayer is a gzip-compressed layer in a file, with its digests worked
// out while it was written, so that nothing is compressed twice.
type fileLayer struct {
	path           string
	digest, diffID ggcr.Hash
	size           int64
}

func (l *fileLayer) Digest() (ggcr.Hash, error)          { return l.digest, nil }
func (l *fileLayer) DiffID() (ggcr.Hash, error)          { return l.diffID, nil }
func (l *fileLayer) Size() (int64, error)                { return l.size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error) { return types.OCILayer, nil }
func (l *fileLayer) Compressed() (io.ReadCloser, error)  { return os.Open(l.path) }
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) {
	f, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	return Gunzip(f)
}

// Gunzip reads the gzip stream f uncompressed; closing the result closes
// f. f is closed if it is not gzip.
func Gunzip(f io.ReadCloser) (io.ReadCloser, error) {
	zr, err := gzip.NewReader(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		f.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{zr, f}, nil
}

// countingHash hashes and counts what is written through it.
type countingHash struct {
	h hash.Hash
	n int64
}

func (c *countingHash) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.h.Write(p)
}

func (c *countingHash) sum() ggcr.Hash {
	return ggcr.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", c.h.Sum(nil))}
}

// writeLayer streams a tar made by fill through gzip into a file in dir,
// hashing both sides on the way.
func writeLayer(dir string, fill func(*tar.Writer) (bool, error)) (*fileLayer, bool, error) {
	f, err := os.CreateTemp(dir, "layer-*.tar.gz")
	if err != nil {
		return nil, false, err
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	compressed := &countingHash{h: sha256.New()}
	bw := bufio.NewWriterSize(io.MultiWriter(f, compressed), 1<<20)
	zw, err := gzip.NewWriterLevel(bw, gzip.DefaultCompression)
	if err != nil {
		return nil, false, err
	}
	uncompressed := &countingHash{h: sha256.New()}
	tw := tar.NewWriter(io.MultiWriter(zw, uncompressed))
	hasShell, err := fill(tw)
	if err != nil {
		return nil, false, err
	}
	for _, c := range []io.Closer{tw, zw} {
		if err := c.Close(); err != nil {
			return nil, false, err
		}
	}
	if err := bw.Flush(); err != nil {
		return nil, false, err
	}
	if err := f.Close(); err != nil {
		return nil, false, err
	}
	ok = true
	return &fileLayer{path: f.Name(), digest: compressed.sum(), diffID: uncompressed.sum(), size: compressed.n}, hasShell, nil
}

// shells are the paths whose presence makes /bin/sh the default command.
func isShell(name string) bool { return name == "bin/sh" || name == "usr/bin/sh" }

// tarDir writes the tree under root into tw, in lexical order. It stays
// on root's filesystem: a mount inside the tree (a forgotten /proc in a
// debootstrap root) appears as an empty directory.
func tarDir(ctx context.Context, root string, tw *tar.Writer) (bool, error) {
	rootInfo, err := os.Lstat(root)
	if err != nil {
		return false, err
	}
	rootDev := rootInfo.Sys().(*syscall.Stat_t).Dev
	type inode struct{ dev, ino uint64 }
	links := map[inode]string{}
	hasShell := false
	buf := make([]byte, 1<<20)
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		name := filepath.ToSlash(rel)
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if info.Mode()&fs.ModeSocket != 0 {
			return nil
		}
		target := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if target, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, target)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		st := info.Sys().(*syscall.Stat_t)
		hdr.Name = name
		hdr.Uname, hdr.Gname = "", ""
		hdr.Uid, hdr.Gid = int(st.Uid), int(st.Gid)
		hdr.ModTime = info.ModTime().Truncate(time.Second)
		hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
		hdr.Format = tar.FormatPAX
		if info.IsDir() {
			hdr.Name += "/"
		}
		if info.Mode().IsRegular() && st.Nlink > 1 {
			key := inode{uint64(st.Dev), st.Ino}
			if first, ok := links[key]; ok {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			} else {
				links[key] = name
			}
		}
		if capability, err := lgetxattr(p, "security.capability"); err == nil && len(capability) > 0 {
			hdr.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": string(capability)}
		}
		if isShell(name) {
			hasShell = true
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.CopyBuffer(tw, f, buf)
			f.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		}
		if info.IsDir() && uint64(st.Dev) != uint64(rootDev) {
			return filepath.SkipDir
		}
		return nil
	})
	return hasShell, err
}

func lgetxattr(p, attr string) ([]byte, error) {
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(p, attr, buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// retar copies a root filesystem tarball into tw with its names made
// relative and clean, refusing entries that would land outside the root.
func retar(ctx context.Context, r io.Reader, tw *tar.Writer) (bool, error) {
	tr := tar.NewReader(r)
	hasShell := false
	buf := make([]byte, 1<<20)
	// The entries so far a hard link may name: one that names another
	// imports, but fails where a node unpacks the layer.
	files := map[string]bool{}
	for {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return hasShell, nil
		}
		if err != nil {
			return false, fmt.Errorf("read tarball: %w", err)
		}
		name, err := cleanName(hdr.Name)
		if err != nil {
			return false, err
		}
		if name == "" {
			continue // the root itself
		}
		if hdr.Typeflag == tar.TypeGNUSparse {
			// The reader has filled in the holes: a regular file, as
			// the writer cannot write a sparse map (and containerd
			// could not read the header it would write).
			hdr.Typeflag = tar.TypeReg
		}
		if hdr.Typeflag == tar.TypeLink {
			if hdr.Linkname, err = cleanName(hdr.Linkname); err != nil {
				return false, err
			}
			if !files[hdr.Linkname] {
				return false, fmt.Errorf("tar entry %q is a hard link to %q, which is not an earlier entry of the tarball other than a directory: a node could not unpack it", name, hdr.Linkname)
			}
		}
		// What a hard link may name: any earlier entry but a directory
		// (GNU tar links symbolic links, fifos and devices too).
		files[name] = hdr.Typeflag != tar.TypeDir
		if isShell(name) {
			hasShell = true
		}
		hdr.Name = name
		if hdr.Typeflag == tar.TypeDir {
			hdr.Name += "/"
		}
		hdr.Format = tar.FormatUnknown
		if err := tw.WriteHeader(hdr); err != nil {
			return false, fmt.Errorf("%s: %w", name, err)
		}
		if _, err := io.CopyBuffer(tw, tr, buf); err != nil {
			return false, fmt.Errorf("%s: %w", name, err)
		}
	}
}

// cleanName makes a tar entry name relative to the root ("./etc/x",
// "/etc/x" and "etc/x" all become "etc/x"); "" is the root itself.
func cleanName(n string) (string, error) {
	c := path.Clean("/" + n)
	if strings.Contains(n, "..") {
		// path.Clean of "/"+n keeps us inside the root, but an entry
		// that climbs out is a broken or hostile tarball: say so.
		for _, part := range strings.Split(n, "/") {
			if part == ".." {
				return "", fmt.Errorf("tar entry %q points outside the root filesystem", n)
			}
		}
	}
	return strings.TrimPrefix(c, "/"), nil
}

// sniff tells what kind of tarball a file is: "docker-archive" (docker
// save), "oci-archive" (an OCI image layout), or "rootfs".
func sniff(p string) (kind string, compressed bool, err error) {
	f, err := os.Open(p)
	if err != nil {
		return "", false, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	magic, _ := br.Peek(6)
	_, _, compressed = compression(magic)
	var r io.Reader = f // a plain tarball's contents are seeked past
	if !compressed {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return "", false, err
		}
	} else {
		// The names tell an image archive from a root filesystem, also
		// compressed; reading them costs a pass of decompression.
		if r, err = decompress(br); err != nil {
			return "", false, err
		}
		if c, ok := r.(io.Closer); ok {
			defer c.Close()
		}
	}
	tr := tar.NewReader(r)
	var manifest, ociLayout bool
	entries := 0
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil && entries > 0 {
			return "", false, fmt.Errorf("read the tarball: %w (truncated or corrupt?)", err)
		}
		if err != nil {
			return "", false, fmt.Errorf("not a tarball (plain, gzip, bzip2 or zstd) nor a directory: %w", err)
		}
		entries++
		switch strings.TrimPrefix(hdr.Name, "./") {
		case "manifest.json":
			// docker save's, a list naming each image's config and
			// layers, not any file of that name at the top of a
			// root filesystem (a web app's).
			var m []struct {
				Config string
				Layers []string
			}
			b, _ := io.ReadAll(io.LimitReader(tr, 4<<20))
			manifest = json.Unmarshal(b, &m) == nil && len(m) > 0 && m[0].Config != ""
		case "oci-layout":
			ociLayout = true
		}
	}
	switch {
	case entries == 0:
		// Also what an empty file reads as (a failed download).
		return "", false, errors.New("the tarball holds no files")
	case ociLayout && !manifest:
		return "oci-archive", compressed, nil
	case manifest:
		// `docker save` of Docker's containerd image store writes both;
		// its manifest.json names the image to take.
		return "docker-archive", compressed, nil
	}
	return "rootfs", compressed, nil
}

// LoadArchive reads an image archive, from `docker save` or an OCI image
// layout in a tar (`skopeo copy … oci-archive:`), plain or compressed
// whole (gzip, bzip2, zstd), for `gantry image push`. Files it unpacks go
// into workDir, which must outlive every use of the image.
func LoadArchive(src, workDir string) (ggcr.Image, error) {
	kind, compressed, err := sniff(src)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	if kind == "rootfs" {
		return nil, fmt.Errorf("%s is a tarball of files, not an image archive (docker save or OCI archive): make an image of it with `gantry image import`", src)
	}
	return loadArchive(src, workDir, kind, compressed)
}

func loadArchive(src, workDir, kind string, compressed bool) (ggcr.Image, error) {
	if compressed {
		// `docker save app | gzip`: an image archive, compressed whole.
		plain, err := decompressTo(src, workDir)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
		src = plain
	}
	if kind == "oci-archive" {
		return importOCIArchive(src, workDir)
	}
	img, err := tarball.ImageFromPath(src, nil)
	if err != nil {
		return nil, fmt.Errorf("%s as a docker save archive: %w", src, err)
	}
	return img, nil
}

// decompressTo writes the decompressed content of the file src into a
// file in dir and returns its path.
func decompressTo(src, dir string) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	r, err := decompress(bufio.NewReaderSize(in, 1<<20))
	if err != nil {
		return "", err
	}
	if c, ok := r.(io.Closer); ok {
		defer c.Close()
	}
	out, err := os.CreateTemp(dir, "archive-*.tar")
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(out, r); err != nil {
		out.Close()
		return "", fmt.Errorf("decompress: %w", err)
	}
	return out.Name(), out.Close()
}

// compression names the compression a stream starts with.
func compression(magic []byte) (name string, supported, compressed bool) {
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return "gzip", true, true
	case bytes.HasPrefix(magic, []byte("BZh")):
		return "bzip2", true, true
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return "zstd", true, true
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		return "xz", false, true
	}
	return "", true, false
}

func decompress(r *bufio.Reader) (io.Reader, error) {
	magic, _ := r.Peek(6)
	name, supported, _ := compression(magic)
	if !supported {
		return nil, fmt.Errorf("%s-compressed tarballs are not supported: decompress it first (xz -d)", name)
	}
	switch name {
	case "gzip":
		return gzip.NewReader(r)
	case "bzip2":
		return bzip2.NewReader(r), nil
	case "zstd":
		zr, err := zstd.NewReader(r)
		if err != nil {
			return nil, err
		}
		return zr.IOReadCloser(), nil
	}
	return r, nil
}

// importOCIArchive unpacks an OCI image layout tarball into workDir and
// returns its one image.
func importOCIArchive(src, workDir string) (ggcr.Image, error) {
	dir, err := os.MkdirTemp(workDir, "oci-")
	if err != nil {
		return nil, err
	}
	f, err := os.Open(src)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("import %s: %w", src, err)
		}
		name, err := cleanName(hdr.Name)
		if err != nil || name == "" {
			if err != nil {
				return nil, fmt.Errorf("import %s: %w", src, err)
			}
			continue
		}
		dst := filepath.Join(dir, filepath.FromSlash(name))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return nil, err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return nil, err
			}
			out, err := os.Create(dst)
			if err != nil {
				return nil, err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return nil, err
			}
		}
	}
	img, err := LoadLayout(dir)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", src, err)
	}
	return img, nil
}

// LoadLayout reads the image of an OCI layout directory: following the
// indexes it holds (buildx writes an index of the image and its
// attestation), leaving attestations out, and of several platforms
// taking this machine's; more than one image left is an error that says
// how many.
func LoadLayout(dir string) (ggcr.Image, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("%s is not an OCI layout: %w", dir, err)
	}
	images, err := layoutImages(idx, 0)
	if err != nil {
		return nil, err
	}
	// One image under two tags (skopeo's oci:dir:tag, twice) is one.
	seen := map[ggcr.Hash]bool{}
	images = slices.DeleteFunc(images, func(li layoutImage) bool {
		dup := seen[li.desc.Digest]
		seen[li.desc.Digest] = true
		return dup
	})
	all := len(images)
	if len(images) > 1 {
		// buildx's multi-platform output: this machine's platform.
		var mine []layoutImage
		for _, li := range images {
			if p := li.desc.Platform; p != nil && p.OS == "linux" && p.Architecture == runtime.GOARCH {
				mine = append(mine, li)
			}
		}
		images = mine
	}
	if len(images) != 1 {
		return nil, fmt.Errorf("the layout holds %d images (%d for linux/%s); exactly one is needed", all, len(images), runtime.GOARCH)
	}
	return images[0].idx.Image(images[0].desc.Digest)
}

// layoutImage is an image of an OCI layout and the index that lists it.
type layoutImage struct {
	idx  ggcr.ImageIndex
	desc ggcr.Descriptor
}

// layoutImages lists the images of an index and of the indexes it holds
// (buildx writes an index of the image and its attestation manifest),
// leaving out attestations, which are no runnable image.
func layoutImages(idx ggcr.ImageIndex, depth int) ([]layoutImage, error) {
	if depth > 4 {
		return nil, errors.New("image indexes nested too deep")
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var out []layoutImage
	for _, d := range m.Manifests {
		switch {
		case d.Annotations["vnd.docker.reference.type"] == "attestation-manifest",
			d.Platform != nil && d.Platform.OS == "unknown":
		case d.MediaType.IsImage():
			out = append(out, layoutImage{idx, d})
		case d.MediaType.IsIndex():
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, err
			}
			more, err := layoutImages(child, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, more...)
		}
	}
	return out, nil
}
