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
	// A source .dockerignore excludes may still be a directory that a
	// ! pattern brings files of back (`docs` and `!docs/README.md`):
	// Docker sends those, so COPY docs copies them.
	type match struct {
		rel      string
		excluded bool
	}
	for _, arg := range args {
		p := path.Clean("/" + arg)
		var hosts []match
		if hasGlob(p) {
			matches, err := globIn(root, p)
			if err != nil {
				return nil, fmt.Errorf("source pattern %q: %w", arg, err)
			}
			for _, rel := range matches {
				excluded := ig.ignored(rel)
				if excluded && !ig.hasIncludes() {
					continue
				}
				hosts = append(hosts, match{rel, excluded})
			}
		} else {
			rel := strings.TrimPrefix(p, "/")
			excluded := ig.ignored(rel)
			if excluded && !ig.hasIncludes() {
				return nil, fmt.Errorf("%s: excluded by .dockerignore", arg)
			}
			hosts = []match{{rel, excluded}}
		}
		n := len(out)
		for _, h := range hosts {
			rel := h.rel
			host, err := resolveIn(root, rel, true)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", arg, err)
			}
			// Docker never sends what .dockerignore excludes, so a link
			// to it would dangle there: what a link leads to is checked
			// as well as the link.
			if to, err := filepath.Rel(root, host); err == nil && filepath.ToSlash(to) != rel && ig.ignored(filepath.ToSlash(to)) {
				if h.excluded {
					continue
				}
				return nil, fmt.Errorf("%s: leads, through a symbolic link, to %s, which .dockerignore excludes", arg, filepath.ToSlash(to))
			}
			fi, err := os.Lstat(host)
			if errors.Is(err, fs.ErrNotExist) && !h.excluded {
				return nil, fmt.Errorf("%s: not found", arg)
			}
			if err != nil && !h.excluded {
				return nil, fmt.Errorf("%s: %w", arg, err)
			}
			if h.excluded && (err != nil || !fi.IsDir()) {
				continue
			}
			s := source{arg: arg, name: path.Base("/" + rel), host: host, info: fi}
			if fi.IsDir() {
				if s.entries, err = walkSource(root, host, ig); err != nil {
					return nil, fmt.Errorf("%s: %w", arg, err)
				}
				if h.excluded && len(s.entries) == 0 {
					continue // nothing of it comes back
				}
			}
			out = append(out, s)
		}
		if len(out) == n {
			if hasGlob(p) {
				return nil, fmt.Errorf("no source files match %q (or .dockerignore excludes all of them)", arg)
			}
			return nil, fmt.Errorf("%s: excluded by .dockerignore", arg)
		}
	}
	return out, nil
}

// globIn expands the pattern p (a slash path) in the tree at root, as
// filepath.Glob would with root as "/": one component at a time, each
// directory reached as resolveIn reaches it (a link, absolute or not,
// stays in the tree), and root's own path never part of the pattern. It
// returns the matching paths relative to root, as p spells them, sorted.
func globIn(root, p string) ([]string, error) {
	prefixes := []string{""}
	for _, c := range components(p) {
		var next []string
		if !hasGlob(c) {
			for _, pre := range prefixes {
				next = append(next, path.Join(pre, c))
			}
			prefixes = next
			continue
		}
		if _, err := path.Match(c, ""); err != nil {
			return nil, err
		}
		for _, pre := range prefixes {
			dir, err := resolveIn(root, pre, true)
			if err != nil {
				return nil, err
			}
			ents, err := os.ReadDir(dir)
			if err != nil {
				continue // not a directory, or gone: no match below it
			}
			for _, e := range ents {
				if ok, _ := path.Match(c, e.Name()); ok {
					next = append(next, path.Join(pre, e.Name()))
				}
			}
		}
		prefixes = next
	}
	var out []string
	for _, rel := range prefixes {
		host, err := resolveIn(root, rel, false)
		if err != nil {
			return nil, err
		}
		if _, err := os.Lstat(host); err == nil {
			out = append(out, rel)
		}
	}
	sort.Strings(out)
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
