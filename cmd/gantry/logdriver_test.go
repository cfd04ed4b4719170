package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestLogDriverArgv(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tests := []struct {
		name      string
		companion string // script body of gantry-logdriver; "" for none
		want      string // "companion" or "fallback"
	}{
		{"no companion binary", "", "fallback"},
		{"companion of the same version", "echo " + version, "companion"},
		{"companion of another version", "echo v0.0.0-other", "fallback"},
		{"companion that fails", "exit 3", "fallback"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			self := filepath.Join(dir, "gantry")
			bin := filepath.Join(dir, logDriverBinary)
			if tt.companion != "" {
				if err := os.WriteFile(bin, []byte("#!/bin/sh\n"+tt.companion+"\n"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			got := logDriverArgv(context.Background(), self, log)
			want := []string{self, logDriverCommand}
			if tt.want == "companion" {
				want = []string{bin}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("logDriverArgv = %q, want %q", got, want)
			}
		})
	}
}
