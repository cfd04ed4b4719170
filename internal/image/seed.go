package image

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"sort"
	"strings"
	"time"

	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// BusyboxPath is where Debian's busybox-static package installs busybox.
const BusyboxPath = "/bin/busybox"

// epoch is the timestamp of every file and image Gantry packs itself, so
// that the same inputs always give the same digest.
var epoch = time.Unix(0, 0).UTC()

// File is one entry of a layer built in memory.
type File struct {
	Path     string // absolute path inside the image
	Mode     int64  // permission bits; directories get 0755 when zero
	Dir      bool
	Link     string // symlink target, when set
	Contents []byte
	Source   string // host file to copy contents from, when Contents is nil
	UID, GID int
}

// Layer packs files into an uncompressed-digest-stable, gzip-compressed
// OCI layer. Parent directories are added as needed.
func Layer(files []File) (ggcr.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	seen := map[string]bool{}
	var addDir func(p string) error
	addDir = func(p string) error {
		p = path.Clean(p)
		if p == "/" || p == "." || seen[p] {
			return nil
		}
		if err := addDir(path.Dir(p)); err != nil {
			return err
		}
		seen[p] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(p, "/") + "/", Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX})
	}
	sorted := append([]File(nil), files...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	for _, f := range sorted {
		p := path.Clean(f.Path)
		if !path.IsAbs(p) {
			return nil, fmt.Errorf("layer path %q must be absolute", f.Path)
		}
		if err := addDir(path.Dir(p)); err != nil {
			return nil, err
		}
		name := strings.TrimPrefix(p, "/")
		h := &tar.Header{Name: name, Mode: f.Mode, ModTime: epoch, Uid: f.UID, Gid: f.GID, Format: tar.FormatPAX}
		switch {
		case f.Dir:
			if seen[p] {
				continue
			}
			seen[p] = true
			h.Typeflag, h.Name = tar.TypeDir, name+"/"
			if h.Mode == 0 {
				h.Mode = 0o755
			}
			if err := tw.WriteHeader(h); err != nil {
				return nil, err
			}
		case f.Link != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, f.Link
			if h.Mode == 0 {
				h.Mode = 0o777
			}
			if err := tw.WriteHeader(h); err != nil {
				return nil, err
			}
		default:
			data := f.Contents
			if data == nil && f.Source != "" {
				b, err := os.ReadFile(f.Source)
				if err != nil {
					return nil, fmt.Errorf("read %s for the image: %w", f.Source, err)
				}
				data = b
			}
			h.Typeflag, h.Size = tar.TypeReg, int64(len(data))
			if h.Mode == 0 {
				h.Mode = 0o644
			}
			if err := tw.WriteHeader(h); err != nil {
				return nil, err
			}
			if _, err := tw.Write(data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// Config is the part of an image configuration Gantry sets.
type Config struct {
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	User       string
	Labels     map[string]string
	// ExposedPorts like "8080/tcp".
	ExposedPorts []string
}

// FromLayers builds an OCI image for linux/amd64 (or the host's
// architecture) from layers and a config.
func FromLayers(cfg Config, layers ...ggcr.Layer) (ggcr.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.AppendLayers(img, layers...)
	if err != nil {
		return nil, fmt.Errorf("append layers: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", goarch()
	cf.Created = ggcr.Time{Time: epoch}
	cf.Config.Entrypoint = cfg.Entrypoint
	cf.Config.Cmd = cfg.Cmd
	cf.Config.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, cfg.Env...)
	cf.Config.WorkingDir = cfg.WorkingDir
	cf.Config.User = cfg.User
	cf.Config.Labels = cfg.Labels
	if len(cfg.ExposedPorts) > 0 {
		cf.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range cfg.ExposedPorts {
			cf.Config.ExposedPorts[p] = struct{}{}
		}
	}
	return mutate.ConfigFile(img, cf)
}

// busyboxApplets are linked in /bin of the seed image. Busybox answers to
// any applet name, so the list is what a shell user expects to find.
var busyboxApplets = []string{
	"sh", "ash", "cat", "cp", "date", "dd", "df", "echo", "env", "false", "grep",
	"head", "hostname", "httpd", "id", "ip", "kill", "ln", "ls", "mkdir", "mv",
	"nc", "netstat", "nslookup", "ping", "printf", "ps", "pwd", "rm", "rmdir",
	"sed", "seq", "sleep", "sort", "stat", "tail", "tar", "tee", "test", "top",
	"touch", "tr", "true", "uname", "uptime", "wc", "wget", "which", "yes", "awk",
	"vi", "find", "xargs", "chmod", "chown", "du", "free", "md5sum", "sha256sum",
	"base64", "cut", "uniq", "timeout", "watch", "nohup", "whoami", "[",
}

// Busybox packs Debian's static busybox into a minimal image with a shell,
// the common applets, /etc/passwd and a writable /tmp: the seed image
// `gantry image seed` pushes as library/busybox:latest.
func Busybox() (ggcr.Image, error) {
	if _, err := os.Stat(BusyboxPath); err != nil {
		return nil, fmt.Errorf("%s not found: install Debian's busybox-static (scripts/setup.sh does): %w", BusyboxPath, err)
	}
	files := []File{
		{Path: "/bin/busybox", Source: BusyboxPath, Mode: 0o755},
		{Path: "/etc/passwd", Contents: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")},
		{Path: "/etc/group", Contents: []byte("root:x:0:\nnogroup:x:65534:\n")},
		{Path: "/tmp", Dir: true, Mode: 0o1777},
		{Path: "/root", Dir: true, Mode: 0o700},
		{Path: "/var/www", Dir: true},
		{Path: "/proc", Dir: true}, {Path: "/sys", Dir: true}, {Path: "/dev", Dir: true},
	}
	for _, a := range busyboxApplets {
		files = append(files, File{Path: "/bin/" + a, Link: "busybox"})
	}
	l, err := Layer(files)
	if err != nil {
		return nil, err
	}
	return FromLayers(Config{Cmd: []string{"/bin/sh"}}, l)
}

// GoBinary packs one static executable as /NAME into an image FROM
// scratch, with the binary as its entrypoint.
func GoBinary(binPath, name string, cfg Config) (ggcr.Image, error) {
	if name == "" {
		name = path.Base(binPath)
	}
	l, err := Layer([]File{
		{Path: "/" + name, Source: binPath, Mode: 0o755},
		{Path: "/tmp", Dir: true, Mode: 0o1777},
		{Path: "/etc/passwd", Contents: []byte("root:x:0:0:root:/:/" + name + "\nnobody:x:65534:65534:nobody:/:/" + name + "\n")},
	})
	if err != nil {
		return nil, err
	}
	if cfg.Entrypoint == nil {
		cfg.Entrypoint = []string{"/" + name}
	}
	return FromLayers(cfg, l)
}

// BuildStatic compiles the Go main package in dir into a static Linux
// binary at out (CGO disabled, trimmed paths), for GoBinary, for the
// GOARCH of the environment (tests build 32-bit programs so).
func BuildStatic(dir, out string) error {
	return buildStatic(context.Background(), dir, out, append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux"))
}

func buildStatic(ctx context.Context, dir, out string, env []string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = env
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build in %s: %w\n%s", dir, err, b)
	}
	return nil
}

// The seed image's place in the registry.
const (
	SeedRepository = "library/busybox"
	SeedTag        = "latest"
)

// Seed pushes Busybox as library/busybox:latest to registry (HOST:PORT),
// so that a fresh install has a shell image to build on and demo with
// (`gantry image seed`). It returns the pushed reference and digest.
func Seed(ctx context.Context, registry string, auth Auth, progress func(done, total int64)) (string, ggcr.Hash, error) {
	img, err := Busybox()
	if err != nil {
		return "", ggcr.Hash{}, err
	}
	ref := strings.TrimSuffix(registry, "/") + "/" + SeedRepository + ":" + SeedTag
	d, err := Push(ctx, img, ref, auth, progress)
	return ref, d, err
}
