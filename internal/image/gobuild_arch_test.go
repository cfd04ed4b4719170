package image

import (
	"bytes"
	"context"
	"debug/elf"
	"os/exec"
	"testing"
)

// BuildGo promises "a static linux binary for the host's architecture"
// and labels the image with the host's architecture; a GOARCH left in the
// user's environment (from cross-compiling) must not give a binary of
// another architecture in an image that says it is for this host.
func TestBuildGoIgnoresGOARCHFromTheEnvironment(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go")
	}
	other := "arm64"
	if goarch() == "arm64" {
		other = "amd64"
	}
	t.Setenv("GOARCH", other)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"go.mod":  "module example.com/archcheck\n\ngo 1.22\n",
		"main.go": "package main\n\nfunc main() {}\n",
	})
	img, err := BuildGo(context.Background(), dir, Config{})
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	bin := layerEntries(t, img)["archcheck"]
	f, err := elf.NewFile(bytes.NewReader([]byte(bin.content)))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[cf.Architecture]
	if f.Machine != want {
		t.Fatalf("image says %s but /archcheck is a %s binary", cf.Architecture, f.Machine)
	}
}
