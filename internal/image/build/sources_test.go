package build

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A file .dockerignore excludes does not reach the image through a
// symbolic link of the context: Docker never sends it, so the link
// would dangle there.
func TestDockerignoreCannotBeBypassedBySymlink(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, ".env"), []byte("SECRET=1"), 0o600))
	must(os.Mkdir(filepath.Join(dir, "secrets"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "secrets", "key"), []byte("k"), 0o600))
	must(os.Symlink(".env", filepath.Join(dir, "app.env")))
	must(os.Symlink("secrets", filepath.Join(dir, "cfg")))
	ig, err := parseIgnore(strings.NewReader(".env\nsecrets\n"))
	must(err)
	for _, src := range []string{"app.env", "cfg/key", "*.env"} {
		got, err := collectSources(dir, []string{src}, ig)
		if err == nil {
			t.Errorf("COPY %s: copies %s, which .dockerignore excludes", src, got[0].host)
		}
	}
}

// The cache key of a COPY changes when what the COPY writes changes: the
// step copies a context file's security.capability (fileItem), so a
// setcap on a binary must not get the cached layer without it.
func TestCopyCacheKeyCoversFileCapabilities(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "server")
	if err := os.WriteFile(bin, []byte("\x7fELF"), 0o755); err != nil {
		t.Fatal(err)
	}
	key := func() string {
		srcs, err := collectSources(dir, []string{"server"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		k, err := hashSources(srcs)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	before := key()
	// cap_net_bind_service+ep, VFS_CAP_REVISION_2.
	capv := []byte{0, 0, 0, 2, 0, 4, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	if err := unix.Setxattr(bin, "security.capability", capv, 0); err != nil {
		t.Skipf("cannot set file capabilities here: %v", err)
	}
	it, err := fileItem(bin, mustLstat(t, bin))
	if err != nil || len(it.caps) == 0 {
		t.Fatalf("fileItem does not carry the capability (%v), so the test shows nothing", err)
	}
	if key() == before {
		t.Error("COPY's cache key is the same after setcap, though the layer it makes differs: a rebuild serves the stale layer")
	}
}

func mustLstat(t *testing.T, p string) os.FileInfo {
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}
