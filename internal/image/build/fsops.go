package build

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// resolveIn returns the host path of p, a path as seen from inside the
// tree at root, following symbolic links as if root were "/": absolute
// link targets start again at root, and ".." stops at root. The result
// is always root or below it, whatever the links in the tree say, which
// is what keeps a COPY from writing outside the image or reading outside
// the build context. Missing components are taken literally. With
// followLast false a link in the last component is not followed, so that
// it can be replaced.
func resolveIn(root, p string, followLast bool) (string, error) {
	const maxLinks = 40
	links := 0
	rest := components(p)
	cur := "" // resolved so far, relative to root, slash-separated
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		if c == ".." {
			cur = strings.TrimSuffix(path.Dir("/"+cur), "/")
			cur = strings.TrimPrefix(cur, "/")
			continue
		}
		next := path.Join(cur, c)
		if len(rest) == 0 && !followLast {
			cur = next
			break
		}
		host := filepath.Join(root, filepath.FromSlash(next))
		fi, err := os.Lstat(host)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				cur = next
				continue
			}
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > maxLinks {
			return "", fmt.Errorf("%s: too many levels of symbolic links", p)
		}
		target, err := os.Readlink(host)
		if err != nil {
			return "", err
		}
		if path.IsAbs(target) {
			cur = ""
		}
		rest = append(components(target), rest...)
	}
	return filepath.Join(root, filepath.FromSlash(cur)), nil
}

// components splits a slash path into its non-empty, non-"." parts.
func components(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

// item is one thing to create in the image: from a file of the build
// context or another stage, or from an archive ADD extracts.
type item struct {
	mode  fs.FileMode // type and permission bits
	mtime time.Time
	link  string // symlink target
	// hardlink is the path in the image of the file this entry is a hard
	// link to (archives only).
	hardlink string
	uid, gid int    // the source's owner, used when the writer keeps owners
	dev      uint64 // device number of a device node
	caps     []byte // security.capability, kept so setcap'd tools keep working
	open     func() (io.ReadCloser, error)
}

// writer creates files in a mounted root filesystem, confined to it.
type writer struct {
	root string
	// Owner of what is created, unless keepOwner says to keep the item's.
	uid, gid  int
	keepOwner bool
	// chmod, when set, replaces the permissions of copied files and
	// directories (COPY --chmod).
	chmod *fs.FileMode
	// dirTimes are set last: creating entries in a directory changes its
	// modification time.
	dirTimes []dirTime
	buf      []byte
}

type dirTime struct {
	host string
	t    time.Time
}

// mkdirAll makes the directory p (an image path) and its missing parents,
// owned by the writer's owner with mode 0755, and returns its host path.
// Directories that exist keep their owner and mode.
func (w *writer) mkdirAll(p string) (string, error) {
	cur := "/"
	host := w.root
	for _, c := range components(path.Clean("/" + p)) {
		cur = path.Join(cur, c)
		var err error
		if host, err = resolveIn(w.root, cur, true); err != nil {
			return "", err
		}
		fi, err := os.Lstat(host)
		switch {
		case err == nil && fi.IsDir():
			continue
		case err == nil:
			return "", fmt.Errorf("%s exists in the image and is not a directory", cur)
		case !errors.Is(err, fs.ErrNotExist):
			return "", err
		}
		if err := os.Mkdir(host, 0o755); err != nil {
			return "", err
		}
		if err := os.Lchown(host, w.uid, w.gid); err != nil {
			return "", err
		}
		if err := os.Chmod(host, 0o755); err != nil {
			return "", err
		}
	}
	return host, nil
}

// put creates target (an image path) as it is described by it.
func (w *writer) put(target string, it item) error {
	if it.mode&fs.ModeSocket != 0 {
		return nil // a socket means nothing outside its process
	}
	parent, err := w.mkdirAll(path.Dir(path.Clean("/" + target)))
	if err != nil {
		return err
	}
	base := path.Base(path.Clean("/" + target))
	if base == "/" {
		// The root itself: only a directory can go there, and it is kept.
		if it.mode.IsDir() {
			return nil
		}
		return fmt.Errorf("cannot copy a file onto /")
	}
	host := filepath.Join(parent, base)
	uid, gid := w.uid, w.gid
	if w.keepOwner {
		uid, gid = it.uid, it.gid
	}
	perm := it.mode & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
	if w.chmod != nil && (it.mode.IsDir() || it.mode.IsRegular()) {
		perm = *w.chmod
	}

	existing, lerr := os.Lstat(host)
	exists := lerr == nil
	if lerr != nil && !errors.Is(lerr, fs.ErrNotExist) {
		return lerr
	}
	if it.mode.IsDir() {
		if exists && existing.IsDir() {
			// Merging into a directory of the image: it keeps its owner
			// and mode, as Docker's builder does.
			return nil
		}
		if exists {
			if err := os.Remove(host); err != nil {
				return err
			}
		}
		if err := os.Mkdir(host, 0o700); err != nil {
			return err
		}
		if err := os.Lchown(host, uid, gid); err != nil {
			return err
		}
		if err := os.Chmod(host, perm); err != nil {
			return err
		}
		w.dirTimes = append(w.dirTimes, dirTime{host, it.mtime})
		return nil
	}
	if exists {
		if existing.IsDir() {
			return fmt.Errorf("%s is a directory in the image and cannot be replaced by a file", target)
		}
		if err := os.Remove(host); err != nil {
			return err
		}
	}
	switch {
	case it.hardlink != "":
		src, err := resolveIn(w.root, it.hardlink, false)
		if err != nil {
			return err
		}
		return os.Link(src, host)
	case it.mode&fs.ModeSymlink != 0:
		if err := os.Symlink(it.link, host); err != nil {
			return err
		}
		if err := os.Lchown(host, uid, gid); err != nil {
			return err
		}
		return setTimes(host, it.mtime)
	case it.mode.IsRegular():
		if err := w.writeFile(host, it); err != nil {
			return fmt.Errorf("%s: %w", target, err)
		}
	default:
		mode := uint32(perm.Perm())
		switch {
		case it.mode&fs.ModeNamedPipe != 0:
			mode |= unix.S_IFIFO
		case it.mode&fs.ModeCharDevice != 0:
			mode |= unix.S_IFCHR
		case it.mode&fs.ModeDevice != 0:
			mode |= unix.S_IFBLK
		default:
			return fmt.Errorf("%s: unsupported file type %s", target, it.mode.Type())
		}
		if err := unix.Mknod(host, mode, int(it.dev)); err != nil {
			return fmt.Errorf("%s: %w", target, err)
		}
	}
	if err := os.Lchown(host, uid, gid); err != nil {
		return err
	}
	// After chown, which clears set-user-ID and set-group-ID bits.
	if err := os.Chmod(host, perm); err != nil {
		return err
	}
	if len(it.caps) > 0 {
		if err := unix.Lsetxattr(host, "security.capability", it.caps, 0); err != nil {
			return fmt.Errorf("%s: set file capabilities: %w", target, err)
		}
	}
	return setTimes(host, it.mtime)
}

func (w *writer) writeFile(host string, it item) error {
	r, err := it.open()
	if err != nil {
		return err
	}
	defer r.Close()
	f, err := os.OpenFile(host, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if w.buf == nil {
		w.buf = make([]byte, 1<<20)
	}
	_, err = io.CopyBuffer(f, r, w.buf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// finish sets the modification times of the directories created, deepest
// last-created first.
func (w *writer) finish() error {
	for i := len(w.dirTimes) - 1; i >= 0; i-- {
		if err := setTimes(w.dirTimes[i].host, w.dirTimes[i].t); err != nil {
			return err
		}
	}
	return nil
}

// setTimes sets the access and modification time of p, not following a
// symbolic link. A zero time leaves them as they are.
func setTimes(p string, t time.Time) error {
	if t.IsZero() {
		return nil
	}
	ts := unix.NsecToTimespec(t.UnixNano())
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}

// fileItem describes a file of the host (the build context or a mounted
// stage) for put.
func fileItem(host string, fi fs.FileInfo) (item, error) {
	it := item{mode: fi.Mode(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		it.uid, it.gid, it.dev = int(st.Uid), int(st.Gid), uint64(st.Rdev)
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		l, err := os.Readlink(host)
		if err != nil {
			return it, err
		}
		it.link = l
	case fi.Mode().IsRegular():
		it.open = func() (io.ReadCloser, error) { return os.Open(host) }
		it.caps = fileCaps(host)
	}
	return it, nil
}

// fileCaps returns the file capabilities (security.capability) of the
// file at host, or nil.
func fileCaps(host string) []byte {
	buf := make([]byte, 128)
	if n, err := unix.Lgetxattr(host, "security.capability", buf); err == nil && n > 0 {
		return buf[:n]
	}
	return nil
}

// owner is a resolved --chown.
type owner struct{ uid, gid int }

// lookupOwner resolves a --chown value ("user", "user:group", numeric or
// names) against /etc/passwd and /etc/group of the image at root. As in
// Docker, a user without a group means the group with the user's ID.
func lookupOwner(root, spec string) (owner, error) {
	u, g, hasGroup := strings.Cut(spec, ":")
	uid, err := lookupID(root, "/etc/passwd", u)
	if err != nil {
		return owner{}, fmt.Errorf("--chown=%s: %w", spec, err)
	}
	gid := uid
	if hasGroup {
		if gid, err = lookupID(root, "/etc/group", g); err != nil {
			return owner{}, fmt.Errorf("--chown=%s: %w", spec, err)
		}
	}
	return owner{uid, gid}, nil
}

// lookupID returns the numeric ID of a user or group name in a passwd or
// group file of the image, or the number itself.
func lookupID(root, file, name string) (int, error) {
	if name == "" {
		return 0, fmt.Errorf("empty user or group")
	}
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		return int(n), nil
	}
	host, err := resolveIn(root, file, true)
	if err != nil {
		return 0, err
	}
	f, err := os.Open(host)
	if err != nil {
		return 0, fmt.Errorf("%q is not numeric and the image has no %s to look it up in", name, file)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) >= 3 && fields[0] == name {
			n, err := strconv.ParseUint(fields[2], 10, 32)
			if err != nil {
				return 0, fmt.Errorf("%s: bad ID for %s", file, name)
			}
			return int(n), nil
		}
	}
	return 0, fmt.Errorf("no %q in the image's %s", name, file)
}
