package main

import (
	"os"
	"path/filepath"
	"testing"
)

// The config holds a token: it is written 0600 even where a PATH.tmp
// already exists with another mode (left by someone else in a shared
// directory), which os.WriteFile would have kept.
func TestSavedConfigIsPrivateWhateverTmpFileExists(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config")
	if err := os.WriteFile(path+".tmp", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path+".tmp", 0o644)
	if err := saveConfig(path, &CLIConfig{Server: "https://x", Token: "gtk_secret"}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		t.Fatalf("config with a token written with mode %04o", fi.Mode().Perm())
	}
}
