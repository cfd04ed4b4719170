package build

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/image"
)

// TestBuildRunsAndRebuildsFromCache is the must-show: a
// Dockerfile FROM library/busybox with two RUN steps, a COPY and a CMD
// builds, is pushed, and runs in containerd, its output showing both RUN
// results and the copied file; a rebuild with no change runs nothing,
// gives the same image and takes well under a second.
func TestBuildRunsAndRebuildsFromCache(t *testing.T) {
	e := testEnv(t)
	dir := writeContext(t, map[string]string{
		"Dockerfile": `FROM library/busybox
RUN echo "first step ran" && echo one > /one.txt
RUN echo "second step ran" && echo two > /two.txt && date +%s%N > /stamp
COPY hello.txt /srv/
CMD ["sh", "-c", "cat /one.txt /two.txt /srv/hello.txt"]
`,
		"hello.txt": "hello from the build context\n",
	})
	cache := t.TempDir()

	img, progress, err := e.build(t, dir, cache, nil)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, progress)
	}
	for _, want := range []string{"[1/5] FROM library/busybox", "[2/5] RUN echo", "    first step ran", "    second step ran", "[4/5] COPY hello.txt /srv/", "[5/5] CMD"} {
		if !strings.Contains(progress, want) {
			t.Errorf("progress lacks %q:\n%s", want, progress)
		}
	}
	first, _ := img.Digest()

	t.Run("the image runs and shows both RUN results and the copied file", func(t *testing.T) {
		code, out := e.runImage(t, img, "test/mustshow:v1")
		if code != 0 || out != "one\ntwo\nhello from the build context\n" {
			t.Fatalf("exit %d, output %q", code, out)
		}
	})

	t.Run("a rebuild with no change reuses every layer", func(t *testing.T) {
		start := time.Now()
		img2, progress, err := e.build(t, dir, cache, nil)
		took := time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(progress, "(cached)"); n != 3 {
			t.Errorf("%d steps cached, want 3:\n%s", n, progress)
		}
		if strings.Contains(progress, "    first step ran") || strings.Contains(progress, "    second step ran") {
			t.Errorf("a RUN step ran again:\n%s", progress)
		}
		// The second RUN writes the time into the image: had it run
		// again, the layer and so the image would differ.
		if d, _ := img2.Digest(); d != first {
			t.Errorf("rebuild digest %s, want %s", d, first)
		}
		// How fast is for BenchmarkCachedBuild to say, not a timed
		// assertion here; the time is logged for the curious.
		t.Logf("cached rebuild took %v", took)
	})

	t.Run("a changed source reruns only the steps from it on", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("changed\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		img3, progress, err := e.build(t, dir, cache, nil)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(progress, "(cached)"); n != 2 || strings.Contains(progress, "    first step ran") || strings.Contains(progress, "    second step ran") {
			t.Errorf("want both RUN steps cached and the COPY run:\n%s", progress)
		}
		if got := flatten(t, img3)["/srv/hello.txt"].content; got != "changed\n" {
			t.Errorf("/srv/hello.txt = %q", got)
		}
		if _, out := e.runImage(t, img3, "test/mustshow:v2"); out != "one\ntwo\nchanged\n" {
			t.Errorf("output %q", out)
		}
	})

	t.Run("NoCache runs every step again", func(t *testing.T) {
		_, progress, err := e.build(t, dir, cache, func(o *Options) { o.NoCache = true })
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(progress, "(cached)") || !strings.Contains(progress, "    second step ran") {
			t.Errorf("progress:\n%s", progress)
		}
	})
}

func TestMultiStageCopyFrom(t *testing.T) {
	e := testEnv(t)
	dir := writeContext(t, map[string]string{
		"Dockerfile": `FROM library/busybox AS builder
WORKDIR /out
RUN echo built > artifact && ln -s artifact link && mkdir sub && echo deep > sub/file && chmod 0750 sub

FROM library/busybox AS unused
RUN echo "the unused stage ran" && exit 1

FROM scratch
COPY --from=builder /out/ /app/
COPY --from=builder /bin/busybox /bin/
COPY --from=0 /out/artifact /renamed
ENTRYPOINT ["/bin/busybox"]
CMD ["cat", "/app/artifact", "/app/link", "/app/sub/file"]
`,
	})
	img, progress, err := e.build(t, dir, t.TempDir(), nil)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, progress)
	}
	if strings.Contains(progress, "unused stage ran") {
		t.Errorf("a stage the target does not need was built:\n%s", progress)
	}
	fs := flatten(t, img)
	check := func(p, content string) {
		t.Helper()
		if f, ok := fs[p]; !ok || f.content != content {
			t.Errorf("%s = %+v, want content %q", p, f, content)
		}
	}
	check("/app/artifact", "built\n")
	check("/app/sub/file", "deep\n")
	check("/renamed", "built\n")
	if f := fs["/app/link"]; f.typ != tar.TypeSymlink || f.link != "artifact" {
		t.Errorf("/app/link = %+v", f)
	}
	if f := fs["/app/sub"]; f.typ != tar.TypeDir || f.mode&0o777 != 0o750 {
		t.Errorf("/app/sub = %+v, want a directory with mode 0750", f)
	}
	if f := fs["/bin/busybox"]; f.typ != tar.TypeReg || f.mode&0o111 == 0 {
		t.Errorf("/bin/busybox = type %c mode %o", f.typ, f.mode)
	}
	if _, ok := fs["/out/artifact"]; ok {
		t.Error("the builder stage's filesystem leaked into the final image")
	}
	layers, _ := img.Layers()
	if len(layers) != 3 {
		t.Errorf("%d layers, want 3 (one per COPY)", len(layers))
	}
	if code, out := e.runImage(t, img, "test/multistage:v1"); code != 0 || out != "built\nbuilt\ndeep\n" {
		t.Errorf("exit %d, output %q", code, out)
	}
}

func TestArgsAndEnv(t *testing.T) {
	e := testEnv(t)
	dir := writeContext(t, map[string]string{
		"Dockerfile": `ARG BASE=library/busybox
FROM ${BASE}
ARG GREETING=hello
ARG WHO
ENV DIR=/data MSG="$GREETING world"
WORKDIR $DIR
RUN echo "$GREETING $WHO" > greeting && echo "$MSG" > msg && pwd > pwd
COPY ${SRC:-file.txt} ./
LABEL who=$WHO base=${BASE:-none}
EXPOSE 8080 53/udp
USER nobody
RUN id -u > /tmp/uid
`,
		"file.txt": "data\n",
	})
	cache := t.TempDir()
	args := map[string]string{"WHO": "gantry", "UNUSED": "x"}
	img, progress, err := e.build(t, dir, cache, func(o *Options) { o.BuildArgs = args })
	if err != nil {
		t.Fatalf("build: %v\n%s", err, progress)
	}
	if !strings.Contains(progress, "build argument UNUSED was not consumed") {
		t.Errorf("no warning about UNUSED:\n%s", progress)
	}
	fs := flatten(t, img)
	for p, want := range map[string]string{
		"/data/greeting": "hello gantry\n",
		"/data/msg":      "hello world\n",
		"/data/pwd":      "/data\n",
		"/data/file.txt": "data\n",
		"/tmp/uid":       "65534\n",
	} {
		if got := fs[p].content; got != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if !slices.Contains(c.Env, "DIR=/data") || !slices.Contains(c.Env, "MSG=hello world") {
		t.Errorf("env = %q", c.Env)
	}
	for _, e := range c.Env {
		if strings.HasPrefix(e, "GREETING=") || strings.HasPrefix(e, "WHO=") {
			t.Errorf("ARG %s was kept in the image's environment", e)
		}
	}
	// BASE is a meta ARG the stage does not declare: unset in it.
	if !reflect.DeepEqual(c.Labels, map[string]string{"who": "gantry", "base": "none"}) {
		t.Errorf("labels = %v", c.Labels)
	}
	if _, ok := c.ExposedPorts["8080/tcp"]; !ok || len(c.ExposedPorts) != 2 {
		t.Errorf("ports = %v", c.ExposedPorts)
	}
	if c.User != "nobody" || c.WorkingDir != "/data" {
		t.Errorf("user %q, workdir %q", c.User, c.WorkingDir)
	}

	t.Run("a changed build argument reruns the RUN that sees it", func(t *testing.T) {
		img, progress, err := e.build(t, dir, cache, func(o *Options) { o.BuildArgs = map[string]string{"WHO": "you"} })
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(progress, "RUN echo \"$GREETING $WHO\" > greeting && echo \"$MSG\" > msg && pwd > pwd  (cached)") {
			t.Errorf("the RUN was cached:\n%s", progress)
		}
		if got := flatten(t, img)["/data/greeting"].content; got != "hello you\n" {
			t.Errorf("greeting = %q", got)
		}
	})
}

// tarGz makes a gzip-compressed tar archive.
func tarGz(t *testing.T, entries []tar.Header, contents map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, h := range entries {
		h.Size = int64(len(contents[h.Name]))
		h.ModTime = time.Unix(1700000000, 0)
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(contents[h.Name])); err != nil {
			t.Fatal(err)
		}
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func TestAdd(t *testing.T) {
	e := testEnv(t)
	archive := tarGz(t, []tar.Header{
		{Name: "dir/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "dir/a", Typeflag: tar.TypeReg, Mode: 0o640, Uid: 1000, Gid: 1000},
		{Name: "dir/link", Typeflag: tar.TypeSymlink, Linkname: "a", Mode: 0o777},
		{Name: "dir/hard", Typeflag: tar.TypeLink, Linkname: "dir/a"},
	}, map[string]string{"dir/a": "A"})
	var notTar bytes.Buffer
	zw := gzip.NewWriter(&notTar)
	zw.Write([]byte("just gzip"))
	zw.Close()
	dir := writeContext(t, map[string]string{
		"Dockerfile": `FROM scratch
ADD archive.tar.gz /opt/
ADD notes.txt plain.gz /opt/
COPY --chown=7:8 --chmod=0600 notes.txt /secret
`,
		"archive.tar.gz": string(archive),
		"notes.txt":      "notes\n",
		"plain.gz":       notTar.String(),
	})
	cache := t.TempDir()
	img, progress, err := e.build(t, dir, cache, nil)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, progress)
	}
	fs := flatten(t, img)
	if f := fs["/opt/dir/a"]; f.content != "A" || f.uid != 1000 || f.mode&0o777 != 0o640 {
		t.Errorf("/opt/dir/a = %+v: want the archive's content, owner and mode", f)
	}
	if f := fs["/opt/dir/link"]; f.typ != tar.TypeSymlink || f.link != "a" {
		t.Errorf("/opt/dir/link = %+v", f)
	}
	if f, ok := fs["/opt/dir/hard"]; !ok || (f.typ != tar.TypeLink && f.content != "A") {
		t.Errorf("/opt/dir/hard = %+v", f)
	}
	if f := fs["/opt/notes.txt"]; f.content != "notes\n" {
		t.Errorf("/opt/notes.txt = %+v", f)
	}
	if f := fs["/opt/plain.gz"]; f.content != notTar.String() {
		t.Error("a gzip file that holds no tar was not copied as it is")
	}
	if f := fs["/secret"]; f.uid != 7 || f.gid != 8 || f.mode&0o7777 != 0o600 {
		t.Errorf("/secret = uid %d gid %d mode %o, want 7, 8, 0600", f.uid, f.gid, f.mode)
	}

	t.Run("a rebuild finds every step in the cache", func(t *testing.T) {
		img2, progress, err := e.build(t, dir, cache, nil)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(progress, "(cached)"); n != 3 {
			t.Errorf("%d steps cached, want 3:\n%s", n, progress)
		}
		if d1, d2 := digestOf(t, img), digestOf(t, img2); d1 != d2 {
			t.Errorf("rebuild digest %s, want %s", d2, d1)
		}
	})
}

func digestOf(t *testing.T, img ggcr.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func TestDockerignore(t *testing.T) {
	e := testEnv(t)
	dir := writeContext(t, map[string]string{
		"Dockerfile":    "FROM scratch\nCOPY . /ctx/\n",
		".dockerignore": "# not these\n*.txt\n!keep.txt\nlogs\n",
		"keep.txt":      "keep\n",
		"drop.txt":      "drop\n",
		"logs/x.log":    "log\n",
		"src/main.go":   "package main\n",
	})
	cache := t.TempDir()
	// Through ContainerdDir: the build adopts the containerd running
	// there, as the CLI adopts the node's.
	img, progress, err := e.build(t, dir, cache, func(o *Options) {
		o.Containerd, o.ContainerdDir = "", filepath.Join(e.dir, "ctrd")
	})
	if err != nil {
		t.Fatalf("build: %v\n%s", err, progress)
	}
	fs := flatten(t, img)
	for _, p := range []string{"/ctx/keep.txt", "/ctx/src/main.go", "/ctx/Dockerfile", "/ctx/.dockerignore"} {
		if _, ok := fs[p]; !ok {
			t.Errorf("%s is missing", p)
		}
	}
	for _, p := range []string{"/ctx/drop.txt", "/ctx/logs", "/ctx/logs/x.log"} {
		if _, ok := fs[p]; ok {
			t.Errorf("%s was copied though .dockerignore excludes it", p)
		}
	}
	first, _ := img.Digest()

	t.Run("changing an ignored file keeps the cache", func(t *testing.T) {
		os.WriteFile(filepath.Join(dir, "drop.txt"), []byte("changed\n"), 0o644)
		img, progress, err := e.build(t, dir, cache, nil)
		if err != nil {
			t.Fatal(err)
		}
		if d, _ := img.Digest(); d != first || !strings.Contains(progress, "(cached)") {
			t.Errorf("digest %s (want %s):\n%s", d, first, progress)
		}
	})
	t.Run("naming an ignored file fails", func(t *testing.T) {
		os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY drop.txt /\n"), 0o644)
		_, _, err := e.build(t, dir, cache, nil)
		if err == nil || !strings.Contains(err.Error(), "Dockerfile:2: COPY drop.txt: excluded by .dockerignore") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestCopyDestinations(t *testing.T) {
	e := testEnv(t)
	dir := writeContext(t, map[string]string{
		"Dockerfile": `FROM library/busybox
WORKDIR /app
RUN touch made-by-run && rmdir /var/www
RUN ["touch", "/exec-form"]
COPY file.txt /app
COPY file.txt /renamed.txt
COPY file.txt other.txt sub/
COPY dir /merged/
COPY file.txt /tmp/
COPY --chown=nobody:nogroup file.txt /owned/
COPY link.txt /via-link.txt
`,
		"file.txt":      "file\n",
		"other.txt":     "other\n",
		"dir/inner.txt": "inner\n",
	})
	if err := os.Symlink("file.txt", filepath.Join(dir, "link.txt")); err != nil {
		t.Fatal(err)
	}
	img, progress, err := e.build(t, dir, t.TempDir(), nil)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, progress)
	}
	fs := flatten(t, img)
	for p, want := range map[string]string{
		"/app/file.txt":      "file\n",
		"/renamed.txt":       "file\n",
		"/app/sub/file.txt":  "file\n",
		"/app/sub/other.txt": "other\n",
		"/merged/inner.txt":  "inner\n",
		"/tmp/file.txt":      "file\n",
		"/owned/file.txt":    "file\n",
		"/via-link.txt":      "file\n",
	} {
		if f := fs[p]; f.content != want || f.typ != tar.TypeReg {
			t.Errorf("%s = %+v, want a file holding %q", p, f, want)
		}
	}
	if _, ok := fs["/app/made-by-run"]; !ok {
		t.Error("RUN did not run in WORKDIR")
	}
	if _, ok := fs["/var/www"]; ok {
		t.Error("a directory RUN removed is still in the image")
	}
	if _, ok := fs["/exec-form"]; !ok {
		t.Error("the exec form of RUN did not run")
	}
	if f := fs["/tmp"]; f.mode&0o7777 != 0o1777 {
		t.Errorf("/tmp mode = %o: a COPY into it changed the image's directory", f.mode&0o7777)
	}
	if f := fs["/owned/file.txt"]; f.uid != 65534 || f.gid != 65534 {
		t.Errorf("/owned/file.txt owner %d:%d, want 65534:65534", f.uid, f.gid)
	}
	if f := fs["/owned"]; f.uid != 65534 {
		t.Errorf("/owned owner %d, want the --chown user", f.uid)
	}
	if f := fs["/app/file.txt"]; f.uid != 0 || f.gid != 0 {
		t.Errorf("/app/file.txt owner %d:%d, want root", f.uid, f.gid)
	}

	t.Run("several sources need a directory destination", func(t *testing.T) {
		os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY file.txt other.txt /both\n"), 0o644)
		_, _, err := e.build(t, dir, t.TempDir(), nil)
		if err == nil || !strings.Contains(err.Error(), "Dockerfile:2: COPY with more than one source") || !errors.Is(err, v1.ErrInvalid) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("a source outside the context cannot be reached", func(t *testing.T) {
		os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY ../../../etc/hostname /x\n"), 0o644)
		_, _, err := e.build(t, dir, t.TempDir(), nil)
		if err == nil || !strings.Contains(err.Error(), "not found") {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestFailingRun checks that a RUN that exits 3 fails the build with its
// line and exit code, and leaves nothing behind in containerd nor in the
// cache for the failed step.
func TestFailingRun(t *testing.T) {
	e := testEnv(t)
	dir := writeContext(t, map[string]string{
		"Dockerfile": "FROM library/busybox\nRUN echo ok > /ok\nRUN echo \"about to fail\" && exit 3\nRUN echo never ran\n",
	})
	cache := t.TempDir()
	_, progress, err := e.build(t, dir, cache, nil)
	if err == nil {
		t.Fatal("build succeeded")
	}
	var le *Error
	var ee *ExitError
	if !errors.As(err, &le) || le.Line != 3 || !errors.As(err, &ee) || ee.Code != 3 {
		t.Fatalf("err = %v, want line 3 and exit code 3", err)
	}
	want := `Dockerfile:3: RUN echo "about to fail" && exit 3: the command exited with code 3`
	if err.Error() != want {
		t.Errorf("err = %q, want %q", err, want)
	}
	if !strings.Contains(progress, "    about to fail") || strings.Contains(progress, "never ran") {
		t.Errorf("progress:\n%s", progress)
	}
	entries, _ := filepath.Glob(filepath.Join(cache, "steps", "*.json"))
	if len(entries) != 1 {
		t.Errorf("%d cache entries, want 1 (the step that succeeded)", len(entries))
	}
	tmp, _ := os.ReadDir(filepath.Join(cache, "tmp"))
	if len(tmp) != 0 {
		t.Errorf("temporary files left in the cache: %v", tmp)
	}
}

// TestBuildRefusesUnsupported checks that Build reports an unsupported
// instruction by its line before it does anything: the registry and
// containerd it is given do not exist.
func TestBuildRefusesUnsupported(t *testing.T) {
	dir := writeContext(t, map[string]string{
		"Dockerfile": "FROM library/busybox\nRUN true\nCOPY a /a\nENV A=1\nEXPOSE 80\nUSER nobody\nHEALTHCHECK CMD wget -q localhost\n",
	})
	_, err := Build(ctxT(t, 10*time.Second), Options{Dir: dir, Registry: "127.0.0.1:1", Containerd: "/nonexistent.sock", CacheDir: t.TempDir()})
	want := "Dockerfile:7: HEALTHCHECK is not supported; use health checks in the App manifest"
	if err == nil || err.Error() != want || !errors.Is(err, v1.ErrUnsupported) {
		t.Fatalf("err = %v, want %q", err, want)
	}
}

func TestBuildRefusesURLsAndOtherRegistries(t *testing.T) {
	e := testEnv(t)
	for _, c := range []struct{ name, dockerfile, want string }{
		{"ADD of a URL is refused", "FROM scratch\nADD https://example.com/x.tar.gz /\n", "Dockerfile:2: ADD https://example.com/x.tar.gz: URLs are not supported"},
		{"FROM another registry is refused", "FROM example.com/library/busybox\n", "Dockerfile:1: FROM example.com/library/busybox: images come from the cluster registry"},
		{"FROM an image not pushed says so", "FROM nothing:here\n", "Dockerfile:1: FROM nothing:here: the registry has no test/nothing:here nor library/nothing:here"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := writeContext(t, map[string]string{"Dockerfile": c.dockerfile})
			_, _, err := e.build(t, dir, t.TempDir(), nil)
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}

// TestConfigInstructions checks the configuration instructions, which
// need no containerd: a build of only those never connects to one.
func TestConfigInstructions(t *testing.T) {
	e := testEnv(t)
	dir := writeContext(t, map[string]string{
		"Dockerfile": `FROM library/busybox AS base
ENTRYPOINT ["/bin/echo"]
FROM base
ENV A=1
LABEL org.opencontainers.image.title="my app" version=2
CMD hello $A
`,
	})
	img, _, err := e.build(t, dir, t.TempDir(), func(o *Options) { o.Containerd = "/nonexistent.sock" })
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if !reflect.DeepEqual(c.Entrypoint, []string{"/bin/echo"}) || !reflect.DeepEqual(c.Cmd, []string{"/bin/sh", "-c", "hello $A"}) {
		t.Errorf("entrypoint %q, cmd %q", c.Entrypoint, c.Cmd)
	}
	if c.Labels["org.opencontainers.image.title"] != "my app" || c.Labels["version"] != "2" {
		t.Errorf("labels = %v", c.Labels)
	}
	if cf.Created.Unix() != 0 || cf.OS != "linux" {
		t.Errorf("created %v, os %q", cf.Created, cf.OS)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != "application/vnd.oci.image.manifest.v1+json" || len(m.Layers) != 1 {
		t.Errorf("manifest %s with %d layers", m.MediaType, len(m.Layers))
	}
	nonEmpty := 0
	for _, h := range cf.History {
		if !h.EmptyLayer {
			nonEmpty++
		}
	}
	if nonEmpty != len(m.Layers) {
		t.Errorf("history has %d layer entries for %d layers", nonEmpty, len(m.Layers))
	}

	t.Run("ENTRYPOINT drops an inherited CMD", func(t *testing.T) {
		os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM library/busybox\nENTRYPOINT [\"/bin/echo\"]\n"), 0o644)
		img, _, err := e.build(t, dir, t.TempDir(), func(o *Options) { o.Containerd = "/nonexistent.sock" })
		if err != nil {
			t.Fatal(err)
		}
		cf, _ := img.ConfigFile()
		if cf.Config.Cmd != nil {
			t.Errorf("cmd = %q, want none", cf.Config.Cmd)
		}
	})
}

// TestDockerFormatBase builds on a base image in Docker's manifest format
// (as `docker push` or skopeo may leave it): the result stays in that
// format throughout, and runs.
func TestDockerFormatBase(t *testing.T) {
	e := testEnv(t)
	bb, err := image.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := bb.Layers()
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.DockerManifestSchema2), types.DockerConfigJSON)
	for _, l := range layers {
		if base, err = mutate.Append(base, mutate.Addendum{Layer: l, MediaType: types.DockerLayer}); err != nil {
			t.Fatal(err)
		}
	}
	cf, _ := bb.ConfigFile()
	if base, err = mutate.Config(base, cf.Config); err != nil {
		t.Fatal(err)
	}
	if _, err := image.Push(ctxT(t, time.Minute), base, e.host+"/library/dockerbox:latest", e.auth, nil); err != nil {
		t.Fatal(err)
	}
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM library/dockerbox\nRUN echo docker > /fmt\nCMD [\"cat\", \"/fmt\"]\n"})
	img, progress, err := e.build(t, dir, t.TempDir(), nil)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, progress)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.DockerManifestSchema2 || m.Config.MediaType != types.DockerConfigJSON {
		t.Errorf("manifest %s, config %s: want Docker's", m.MediaType, m.Config.MediaType)
	}
	for _, l := range m.Layers {
		if l.MediaType != types.DockerLayer {
			t.Errorf("layer %s has media type %s", l.Digest, l.MediaType)
		}
	}
	if code, out := e.runImage(t, img, "test/dockerformat:v1"); code != 0 || out != "docker\n" {
		t.Errorf("exit %d, output %q", code, out)
	}
}

// WORKDIR makes its directory, as BuildKit does: owned by the USER in
// force, so that a RUN as that user may write there and an App with a
// read-only root file system can start in it. One that exists adds no
// layer.
func TestWorkdirMakesTheDirectory(t *testing.T) {
	e := testEnv(t)
	dir := writeContext(t, map[string]string{
		"Dockerfile": `FROM library/busybox
USER nobody
WORKDIR /srv/app/data
RUN touch made-by-nobody
WORKDIR /tmp
`,
	})
	img, progress, err := e.build(t, dir, t.TempDir(), nil)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, progress)
	}
	fs := flatten(t, img)
	for _, p := range []string{"/srv/app", "/srv/app/data", "/srv/app/data/made-by-nobody"} {
		if f, ok := fs[p]; !ok || f.uid != 65534 {
			t.Errorf("%s: %+v (present %v), want it owned by nobody (65534)", p, f, ok)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.WorkingDir != "/tmp" {
		t.Errorf("working dir %q, want /tmp", cf.Config.WorkingDir)
	}
	last := cf.History[len(cf.History)-1]
	if last.CreatedBy != "WORKDIR /tmp" || !last.EmptyLayer {
		t.Errorf("last history entry %+v, want an empty layer for the WORKDIR of a directory that exists", last)
	}
}

// A file of the build context edited while a COPY copies it fails the
// step, rather than storing its new content under the key of the old.
func TestCopyRefusesAContextThatChanges(t *testing.T) {
	e := testEnv(t)
	dir := writeContext(t, map[string]string{
		"Dockerfile": "FROM scratch\nCOPY app.conf /etc/\n",
		"app.conf":   "v1\n",
	})
	afterCopy = func() { os.WriteFile(filepath.Join(dir, "app.conf"), []byte("v2\n"), 0o644) }
	t.Cleanup(func() { afterCopy = func() {} })
	cache := t.TempDir()
	_, progress, err := e.build(t, dir, cache, nil)
	if err == nil || !strings.Contains(err.Error(), "changed while they were copied") {
		t.Fatalf("build: %v, want the COPY refused\n%s", err, progress)
	}
	afterCopy = func() {}
	img, _, err := e.build(t, dir, cache, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := flatten(t, img)["/etc/app.conf"].content; got != "v2\n" {
		t.Errorf("/etc/app.conf = %q after a clean rebuild, want v2", got)
	}
}
