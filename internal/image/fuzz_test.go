package image

import (
	"strings"
	"testing"
)

// FuzzCleanName checks that a tar entry name never leaves the root.
func FuzzCleanName(f *testing.F) {
	for _, s := range []string{"./etc/passwd", "/bin/sh", "../x", "a/../../b", "a//b/", ".", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, n string) {
		c, err := cleanName(n)
		if err != nil {
			return
		}
		if strings.HasPrefix(c, "/") || c == ".." || strings.HasPrefix(c, "../") || strings.Contains(c, "/../") {
			t.Fatalf("%q cleaned to %q", n, c)
		}
	})
}
