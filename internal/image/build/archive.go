package build

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// openArchive returns the tar stream of a local file when it is a tar
// archive, plain or compressed with gzip, bzip2, zstd or xz (which needs
// the xz command), as ADD extracts it. ok is false for anything else,
// including a compressed file that holds no tar: ADD copies those as
// they are, like Docker.
func openArchive(ctx context.Context, p string) (rc io.ReadCloser, ok bool, err error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, false, err
	}
	closers := []io.Closer{f}
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i].Close()
		}
	}
	br := bufio.NewReaderSize(f, 64<<10)
	magic, _ := br.Peek(6)
	var r io.Reader = br
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			closeAll()
			return nil, false, nil
		}
		r = zr
	case bytes.HasPrefix(magic, []byte("BZh")):
		r = bzip2.NewReader(br)
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br)
		if err != nil {
			closeAll()
			return nil, false, nil
		}
		closers = append(closers, zr.IOReadCloser())
		r = zr
	case bytes.HasPrefix(magic, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		xz, err := exec.LookPath("xz")
		if err != nil {
			closeAll()
			return nil, false, fmt.Errorf("%s is xz-compressed and the xz command is not installed: install xz-utils or recompress it with gzip", path.Base(p))
		}
		cmd := exec.CommandContext(ctx, xz, "-dc")
		cmd.Stdin = br
		out, err := cmd.StdoutPipe()
		if err != nil {
			closeAll()
			return nil, false, err
		}
		if err := cmd.Start(); err != nil {
			closeAll()
			return nil, false, err
		}
		closers = append(closers, closerFunc(func() error {
			out.Close()
			_ = cmd.Wait()
			return nil
		}))
		r = out
	}
	tr := bufio.NewReaderSize(r, 64<<10)
	if !isTarHeader(tr) {
		closeAll()
		return nil, false, nil
	}
	return struct {
		io.Reader
		io.Closer
	}{tr, closerFunc(func() error { closeAll(); return nil })}, true, nil
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// isTarHeader reports whether r starts with a POSIX or GNU tar header:
// the "ustar" magic at offset 257 of the first block.
func isTarHeader(r *bufio.Reader) bool {
	b, err := r.Peek(512)
	if err != nil {
		return false
	}
	return bytes.Equal(b[257:262], []byte("ustar"))
}

// extract writes the entries of a tar stream below dest (an image path)
// through w. Entries cannot leave dest: they are written as if dest were
// the root (as Docker unpacks an archive chrooted into its destination),
// so a symbolic link in the archive to / or ../.. leads to dest, not to
// the image's own /etc.
func extract(ctx context.Context, r io.Reader, w *writer, dest string) error {
	host, err := w.mkdirAll(dest)
	if err != nil {
		return err
	}
	sub := &writer{root: host, uid: w.uid, gid: w.gid, keepOwner: w.keepOwner, chmod: w.chmod, buf: w.buf}
	defer func() { w.dirTimes = append(w.dirTimes, sub.dirTimes...) }()
	w, dest = sub, "/"
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		name, err := archiveName(hdr.Name)
		if err != nil {
			return err
		}
		if name == "" {
			continue // the archive's root: dest itself
		}
		fi := hdr.FileInfo()
		it := item{mode: fi.Mode(), mtime: hdr.ModTime, uid: hdr.Uid, gid: hdr.Gid, dev: unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))}
		switch hdr.Typeflag {
		case tar.TypeSymlink:
			it.link = hdr.Linkname
		case tar.TypeLink:
			target, err := archiveName(hdr.Linkname)
			if err != nil {
				return err
			}
			it.hardlink = path.Join(dest, target)
		case tar.TypeReg, tar.TypeChar, tar.TypeBlock, tar.TypeFifo, tar.TypeDir:
			if hdr.Typeflag == tar.TypeReg {
				it.open = func() (io.ReadCloser, error) { return io.NopCloser(tr), nil }
			}
			if c, ok := hdr.PAXRecords["SCHILY.xattr.security.capability"]; ok {
				it.caps = []byte(c)
			}
		case tar.TypeXGlobalHeader:
			continue
		default:
			return fmt.Errorf("archive entry %s has unsupported type %q", name, hdr.Typeflag)
		}
		if err := w.put(path.Join(dest, name), it); err != nil {
			return err
		}
	}
}

// archiveName makes an archive entry name relative and clean, refusing
// one that climbs out with "..".
func archiveName(n string) (string, error) {
	for _, part := range strings.Split(n, "/") {
		if part == ".." {
			return "", fmt.Errorf("archive entry %q points outside the destination", n)
		}
	}
	return strings.TrimPrefix(path.Clean("/"+n), "/"), nil
}
