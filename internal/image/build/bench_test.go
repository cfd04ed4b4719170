package build

import (
	"io"
	"testing"
	"time"
)

// BenchmarkCachedBuild times a whole Build of a 3-step Dockerfile (two
// RUNs and a COPY on library/busybox) whose steps are all in the cache:
// the figure is under 1 s. It reports ms per build.
func BenchmarkCachedBuild(b *testing.B) {
	e := testEnv(b)
	dir := writeContext(b, map[string]string{
		"Dockerfile": "FROM library/busybox\nRUN echo one > /one.txt\nRUN echo two > /two.txt\nCOPY hello.txt /srv/\nCMD [\"cat\", \"/srv/hello.txt\"]\n",
		"hello.txt":  "hello\n",
	})
	opts := e.options(dir, b.TempDir(), io.Discard)
	ctx := ctxT(b, 10*time.Minute)
	first, err := Build(ctx, opts)
	if err != nil {
		b.Fatal(err)
	}
	want, _ := first.Digest()
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		img, err := Build(ctx, opts)
		if err != nil {
			b.Fatal(err)
		}
		if d, _ := img.Digest(); d != want {
			b.Fatalf("cached build gave %s, want %s", d, want)
		}
	}
	per := time.Since(start) / time.Duration(b.N)
	b.ReportMetric(float64(per.Microseconds())/1000, "ms/build")
	b.Logf("cached build of a 3-step Dockerfile: %v per build over %d builds (target: under 1s)", per, b.N)
}
