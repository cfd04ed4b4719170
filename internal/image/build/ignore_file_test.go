package build

import (
	"strings"
	"testing"
)

// A .dockerignore saved with a byte-order mark (Windows editors) lost its
// first pattern to it, so the file that pattern names (.env, a key) went
// into the image. BuildKit strips the mark.
func TestDockerignoreWithAByteOrderMark(t *testing.T) {
	ig, err := parseIgnore(strings.NewReader("\ufeff.env\nnode_modules\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{".env", "node_modules/x"} {
		if !ig.ignored(p) {
			t.Errorf("%s is not excluded by a .dockerignore that starts with a byte-order mark", p)
		}
	}
}

// `-f app.Dockerfile` reads app.Dockerfile.dockerignore, next to the
// Dockerfile, in place of the context's .dockerignore, as BuildKit does.
func TestDockerfileSpecificIgnoreFile(t *testing.T) {
	dir := writeContext(t, map[string]string{
		"app.Dockerfile":              "FROM scratch\nCOPY . /\n",
		"app.Dockerfile.dockerignore": "secret.txt\n",
		".dockerignore":               "other.txt\n",
		"secret.txt":                  "s",
		"other.txt":                   "o",
	})
	for _, tt := range []struct {
		dockerfile       string
		ignored, allowed string
	}{
		{dir + "/app.Dockerfile", "secret.txt", "other.txt"},
		{"", "other.txt", "secret.txt"}, // DIR/Dockerfile: no own file, the context's
	} {
		b, err := newBuilder(Options{Dir: dir, Dockerfile: tt.dockerfile, CacheDir: t.TempDir()})
		if tt.dockerfile == "" && err != nil {
			continue // no DIR/Dockerfile here: only the first case builds
		}
		if err != nil {
			t.Fatal(err)
		}
		if !b.ignore.ignored(tt.ignored) || b.ignore.ignored(tt.allowed) {
			t.Errorf("-f %q: %s ignored %v, %s ignored %v; want true, false", tt.dockerfile,
				tt.ignored, b.ignore.ignored(tt.ignored), tt.allowed, b.ignore.ignored(tt.allowed))
		}
	}
}
