package main

import (
	"bytes"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// image.Import documents "/bin/sh as the command when the root has one
// and cfg names none"; `gantry image import` of a root without a shell
// (a distroless root, a single static binary) must not get /bin/sh as
// its CMD, which makes every container of it fail to start.
func TestImportOfAShelllessRootGetsNoShellCmd(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "app"), 0o755)
	os.WriteFile(filepath.Join(root, "app/server"), []byte("\x7fELF"), 0o755)

	cfg := filepath.Join(t.TempDir(), "config")
	os.WriteFile(cfg, []byte("server: https://127.0.0.1:1\nregistry: "+host+"\ntoken: x\n"), 0o600)
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"--config", cfg, "image", "import", root, "-t", "team/app:v1"})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("import: %v\n%s", err, out.String())
	}
	ref, _ := name.ParseReference(host + "/team/app:v1")
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	if len(cf.Config.Cmd) > 0 && cf.Config.Cmd[0] == "/bin/sh" {
		t.Fatalf("a root with no /bin/sh was imported with CMD %q", cf.Config.Cmd)
	}
}
