package build

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// EXPOSE $PORTS with PORTS="80 443" failed ("not a port"); BuildKit
// splits an EXPOSE word's expansion on white space and exposes each
// (review helper-161).
func TestExposeSplitsAVariableOfSeveralPorts(t *testing.T) {
	for _, tc := range []struct {
		dockerfile string
		want       []string
	}{
		{"FROM scratch\nARG PORTS=\"80 443\"\nEXPOSE $PORTS\n", []string{"443/tcp", "80/tcp"}},
		{"FROM scratch\nENV P=\"53/udp  8080\"\nEXPOSE ${P} 9000\n", []string{"53/udp", "8080/tcp", "9000/tcp"}},
		{"FROM scratch\nEXPOSE 80\n", []string{"80/tcp"}},
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(tc.dockerfile), 0o644); err != nil {
			t.Fatal(err)
		}
		img, err := Build(context.Background(), Options{Dir: dir, CacheDir: filepath.Join(t.TempDir(), "cache")})
		if err != nil {
			t.Errorf("%q: %v", tc.dockerfile, err)
			continue
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if got := slices.Sorted(maps.Keys(cf.Config.ExposedPorts)); !slices.Equal(got, tc.want) {
			t.Errorf("%q exposes %v, want %v", tc.dockerfile, got, tc.want)
		}
	}
}
