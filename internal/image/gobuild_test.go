package image

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for n, c := range files {
		p := filepath.Join(dir, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBuildGo(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go toolchain not on PATH")
	}
	ctx := context.Background()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"go.mod":      "module example.com/tools/hello\n\ngo 1.22\n",
		"main.go":     "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello from gantry\") }\n",
		"lib/lib.go":  "package lib\n\nconst X = 1\n",
		"Dockerfile2": "not a Dockerfile",
	})
	start := time.Now()
	img, err := BuildGo(ctx, dir, Config{Env: []string{"MODE=test"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built in %s", time.Since(start).Round(time.Millisecond))

	cf, _ := img.ConfigFile()
	if strings.Join(cf.Config.Entrypoint, " ") != "/hello" || !strings.Contains(strings.Join(cf.Config.Env, " "), "MODE=test") {
		t.Errorf("config %+v", cf.Config)
	}
	got := layerEntries(t, img)
	bin, ok := got["hello"]
	if !ok || bin.typ != tar.TypeReg || bin.mode != 0o755 || !bytes.HasPrefix([]byte(bin.content), []byte("\x7fELF")) {
		t.Fatalf("no executable /hello in %v", keys(got))
	}
	t.Run("the binary is static and runs", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "hello")
		if err := os.WriteFile(p, []byte(bin.content), 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("file", p).CombinedOutput(); err == nil && !strings.Contains(string(out), "statically linked") {
			t.Errorf("not static: %s", out)
		}
		out, err := exec.Command(p).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "hello from gantry" {
			t.Errorf("ran: %q, %v", out, err)
		}
	})
	t.Run("a directory that is not a main package is refused", func(t *testing.T) {
		_, err := BuildGo(ctx, filepath.Join(dir, "lib"), Config{})
		if err == nil || !strings.Contains(err.Error(), "not a main package") {
			t.Errorf("err %v", err)
		}
		if IsGoMain(ctx, filepath.Join(dir, "lib")) || !IsGoMain(ctx, dir) {
			t.Error("IsGoMain is wrong")
		}
	})
	t.Run("a Dockerfile takes precedence", func(t *testing.T) {
		writeFiles(t, dir, map[string]string{"Dockerfile": "FROM scratch\n"})
		defer os.Remove(filepath.Join(dir, "Dockerfile"))
		if IsGoMain(ctx, dir) {
			t.Error("IsGoMain with a Dockerfile")
		}
	})
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
