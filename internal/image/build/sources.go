package build

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// source is one source of a COPY or ADD after glob expansion, with
// everything below it that is to be copied.
type source struct {
	arg  string // the pattern or path it came from, for messages
	name string // base name, for copying a file into a directory
	host string // resolved host path
	info fs.FileInfo
	// entries are what a directory source holds (not the directory
	// itself), parents before children, in lexical order.
	entries []entry
}

type entry struct {
	rel  string // slash path relative to the source directory
	host string
	info fs.FileInfo // of the entry itself (not followed)
}

func hasGlob(p string) bool { return strings.ContainsAny(p, "*?[") }

// collectSources expands the sources of a COPY or ADD in the tree at root
// (the build context, or another stage's mounted filesystem), leaving out
// what ig excludes. Paths are taken as relative to root and cannot leave
// it, by ".." or by symbolic links.
func collectSources(root string, args []string, ig *ignorer) ([]source, error) {
	var out []source
	for _, arg := range args {
		p := path.Clean("/" + arg)
		var hosts []string
		if hasGlob(p) {
			matches, err := filepath.Glob(filepath.Join(root, filepath.FromSlash(p)))
			if err != nil {
				return nil, fmt.Errorf("source pattern %q: %w", arg, err)
			}
			for _, m := range matches {
				rel, err := filepath.Rel(root, m)
				if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
					continue
				}
				if ig.ignored(filepath.ToSlash(rel)) {
					continue
				}
				hosts = append(hosts, filepath.ToSlash(rel))
			}
			if len(hosts) == 0 {
				return nil, fmt.Errorf("no source files match %q (or .dockerignore excludes all of them)", arg)
			}
		} else {
			if ig.ignored(strings.TrimPrefix(p, "/")) {
				return nil, fmt.Errorf("%s: excluded by .dockerignore", arg)
			}
			hosts = []string{strings.TrimPrefix(p, "/")}
		}
		for _, rel := range hosts {
			host, err := resolveIn(root, rel, true)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", arg, err)
			}
			// Docker never sends what .dockerignore excludes, so a link
			// to it would dangle there: what a link leads to is checked
			// as well as the link.
			if to, err := filepath.Rel(root, host); err == nil && filepath.ToSlash(to) != rel && ig.ignored(filepath.ToSlash(to)) {
				return nil, fmt.Errorf("%s: leads, through a symbolic link, to %s, which .dockerignore excludes", arg, filepath.ToSlash(to))
			}
			fi, err := os.Lstat(host)
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("%s: not found", arg)
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", arg, err)
			}
			s := source{arg: arg, name: path.Base("/" + rel), host: host, info: fi}
			if fi.IsDir() {
				if s.entries, err = walkSource(root, host, ig); err != nil {
					return nil, fmt.Errorf("%s: %w", arg, err)
				}
			}
			out = append(out, s)
		}
	}
	return out, nil
}

// walkSource lists what the directory dir holds, leaving out what ig
// excludes (paths of ig are relative to root). Symbolic links are listed,
// not followed.
func walkSource(root, dir string, ig *ignorer) ([]entry, error) {
	var out []entry
	walkExcluded := ig.hasIncludes()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		relRoot, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if ig.ignored(filepath.ToSlash(relRoot)) {
			if d.IsDir() && !walkExcluded {
				return filepath.SkipDir
			}
			// An excluded directory is still walked when a ! pattern may
			// bring back something below it; the directory itself is
			// then made on the way to what comes back.
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		out = append(out, entry{rel: filepath.ToSlash(rel), host: p, info: fi})
		return nil
	})
	return out, err
}

// hashSources digests what a COPY or ADD would copy: names, types,
// permissions, link targets and contents, but not times or owners (the
// step sets owners itself, and a fresh checkout must not miss the cache).
func hashSources(srcs []source) (string, error) {
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for _, s := range srcs {
		fmt.Fprintf(h, "source %q %q\n", s.arg, s.name)
		if err := hashEntry(h, buf, "", s.host, s.info); err != nil {
			return "", err
		}
		for _, e := range s.entries {
			if err := hashEntry(h, buf, e.rel, e.host, e.info); err != nil {
				return "", err
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func hashEntry(h hash.Hash, buf []byte, rel, host string, fi fs.FileInfo) error {
	fmt.Fprintf(h, "%q %o", rel, uint32(fi.Mode()))
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		l, err := os.Readlink(host)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, " -> %q", l)
	case fi.Mode().IsRegular():
		f, err := os.Open(host)
		if err != nil {
			return err
		}
		fh := sha256.New()
		n, err := io.CopyBuffer(fh, f, buf)
		f.Close()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, " %d %x", n, fh.Sum(nil))
		// The copy keeps a file's capabilities (fileItem): a setcap
		// makes another layer.
		if caps := fileCaps(host); caps != nil {
			fmt.Fprintf(h, " caps %x", caps)
		}
	case fi.Mode()&(fs.ModeDevice|fs.ModeCharDevice) != 0:
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			fmt.Fprintf(h, " dev %d", uint64(st.Rdev))
		}
	}
	_, err := io.WriteString(h, "\n")
	return err
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
