package runtime

import (
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/gantry-dev/gantry/internal/image"
	"github.com/gantry-dev/gantry/internal/runtime/runtimetest"
)

// TestSeccomp32BitABI runs a 32-bit (i386) program under the secure
// defaults: the seccomp filter admits only the native ABI, so it dies of
// SIGSYS, unless the spec allows 32-bit or the image says it is built
// for i386.
func TestSeccomp32BitABI(t *testing.T) {
	if goruntime.GOARCH != "amd64" {
		t.Skip("builds an i386 program; the test is for amd64 nodes")
	}
	e := testEnv(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module hello32\n\ngo 1.22\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello from i386\") }\n"), 0o644)
	bin := filepath.Join(dir, "hello")
	t.Setenv("GOARCH", "386")
	if err := image.BuildStatic(dir, bin); err != nil {
		t.Fatal(err)
	}
	runtimetest.Require32Bit(t, bin)
	host := strings.Split(e.busybox, "/")[0]
	push := func(ref, arch string) string {
		img, err := image.GoBinary(bin, "hello", image.Config{})
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf = cf.DeepCopy()
		cf.Architecture = arch
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			t.Fatal(err)
		}
		ref = host + "/" + ref
		if err := pushImage(ref, img); err != nil {
			t.Fatal(err)
		}
		return ref
	}
	// A 64-bit image that carries a 32-bit program, and an i386 image.
	labelled64 := push("test/hello32:amd64", "amd64")
	labelled32 := push("test/hello32:386", "386")

	for _, tc := range []struct {
		name       string
		ref        string
		allow32Bit bool
		wantCode   int
	}{
		{"amd64 image, default: SIGSYS", labelled64, false, 128 + 31},
		{"amd64 image, allow32Bit: runs", labelled64, true, 0},
		{"i386 image, default: runs", labelled32, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := e.driver.EnsureImage(ctxT(t, 60*time.Second), tc.ref); err != nil {
				t.Fatalf("EnsureImage: %v", err)
			}
			s := run(t, e, e.driver, func(s *ContainerSpec) {
				s.Image = tc.ref
				s.Security.Allow32Bit = tc.allow32Bit
			})
			if ex := waitExit(t, e.driver, s.ID, 30*time.Second); ex.Code != tc.wantCode {
				t.Fatalf("exit code %d, want %d", ex.Code, tc.wantCode)
			}
			if tc.wantCode == 0 {
				if lines := logLines(t, s.LogPath, 1); lines[0].Line != "hello from i386" {
					t.Fatalf("log %q", lines[0].Line)
				}
			}
		})
	}
}
