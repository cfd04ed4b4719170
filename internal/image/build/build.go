package build

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	ggcr "github.com/google/go-containerregistry/pkg/v1"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/image"
)

// Options say what to build and with what.
type Options struct {
	// Dir is the build context: COPY and ADD read from it.
	Dir string
	// Dockerfile is the Dockerfile's path; Dir/Dockerfile when empty.
	Dockerfile string
	// Tag names the image being built, for progress and for the build's
	// lease in containerd. Build does not push: see image.Push.
	Tag string
	// BuildArgs set ARG values (--build-arg NAME=VALUE).
	BuildArgs map[string]string
	// Target is the stage to build, by name or index; the last stage
	// when empty. Stages the target does not need are not built.
	Target string

	// Registry is the registry FROM images come from (HOST:PORT).
	// "library/busybox" is REGISTRY/library/busybox; a name without a
	// slash is looked up in Namespace, then in library. Images of other
	// registries are refused, so that Auth is never sent elsewhere.
	Registry  string
	Namespace string
	Auth      image.Auth

	// Containerd is the address of a running containerd that RUN steps
	// and filesystem steps use. When empty, ContainerdDir names the
	// directory of a private containerd (runtime.StartDaemon): Build
	// adopts the one running there or starts it the first time a step
	// needs it, and leaves it running for the next build. A build whose
	// steps all come from the cache needs neither.
	Containerd    string
	ContainerdDir string
	// HostNetwork gives RUN steps the host's network (and its
	// /etc/resolv.conf and /etc/hosts). By default they have none: only
	// loopback. With the host network, runc creates those two files in
	// the image if it lacks them, so they can appear in the step's layer.
	HostNetwork bool

	// CacheDir keeps the layer cache; the user's cache directory
	// (~/.cache/gantry/build) when empty. The layers of the image Build
	// returns are read from there, so it must outlive the image's use.
	CacheDir string
	// NoCache runs every step even if the cache has it (the cache is
	// still filled).
	NoCache bool

	// Progress receives a line per step ("[2/5] RUN make") and the output
	// of RUN commands. Nil discards them.
	Progress io.Writer
	Log      *slog.Logger
}

// epoch is the creation time Gantry's images carry, so that the same
// inputs give the same image digest: a rebuild from the cache is the
// same image.
var epoch = ggcr.Time{Time: time.Unix(0, 0).UTC()}

// defaultPath is the PATH a stage gets when its base sets none.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Build builds the image a Dockerfile describes. Steps that change the
// filesystem (RUN, COPY, ADD) are looked up in the layer cache first; a
// miss runs in containerd. It returns the image of the target stage; its
// own layers are files in CacheDir and its base layers stay in the
// registry until the image is pushed.
func Build(ctx context.Context, opts Options) (ggcr.Image, error) {
	b, err := newBuilder(opts)
	if err != nil {
		return nil, err
	}
	img, err := b.build(ctx)
	if b.sess != nil {
		if cerr := b.sess.close(); cerr != nil {
			if err == nil {
				return nil, cerr
			}
			b.log.Warn("clean up the build in containerd", "err", cerr)
		}
	}
	if err != nil {
		return nil, err
	}
	return img, nil
}

type builder struct {
	opts   Options
	log    *slog.Logger
	out    io.Writer
	df     *Dockerfile
	ctxDir string
	ignore *ignorer
	cache  *cache
	sess   *session

	meta     map[string]string // values of the ARGs before FROM, and the platform ones
	consumed map[string]bool   // build args some ARG declared
	stages   []*stageState     // by index; nil for stages not (yet) built
	step     int
	total    int
}

func newBuilder(opts Options) (*builder, error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("build: no context directory: %w", v1.ErrInvalid)
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("build context %s is not a directory: %w", opts.Dir, v1.ErrInvalid)
	}
	dfPath := opts.Dockerfile
	if dfPath == "" {
		dfPath = filepath.Join(dir, "Dockerfile")
	}
	f, err := os.Open(dfPath)
	if err != nil {
		return nil, fmt.Errorf("open the Dockerfile: %w", err)
	}
	df, err := Parse(filepath.Base(dfPath), f)
	f.Close()
	if err != nil {
		return nil, err
	}
	// As BuildKit: a Dockerfile's own NAME.dockerignore, next to it, in
	// place of the context's .dockerignore.
	var ig *ignorer
	for _, p := range []string{dfPath + ".dockerignore", filepath.Join(dir, ".dockerignore")} {
		f, err := os.Open(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		ig, err = parseIgnore(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		break
	}
	cacheDir := opts.CacheDir
	if cacheDir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("no cache directory given and none found: %w", err)
		}
		cacheDir = filepath.Join(base, "gantry", "build")
	}
	c, err := openCache(cacheDir)
	if err != nil {
		return nil, err
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	out := opts.Progress
	if out == nil {
		out = io.Discard
	}
	return &builder{
		opts: opts, log: log.With("component", "build"), out: &syncWriter{w: out},
		df: df, ctxDir: dir, ignore: ig, cache: c,
		consumed: map[string]bool{},
	}, nil
}

func (b *builder) fail(line int, err error) error {
	var le *Error
	if errors.As(err, &le) {
		return err
	}
	return &Error{File: b.df.Name, Line: line, Err: err}
}

func (b *builder) build(ctx context.Context) (ggcr.Image, error) {
	if err := b.metaArgs(); err != nil {
		return nil, err
	}
	target, err := b.targetIndex()
	if err != nil {
		return nil, err
	}
	needed, err := b.neededStages(target)
	if err != nil {
		return nil, err
	}
	b.stages = make([]*stageState, len(b.df.Stages))
	for i, st := range b.df.Stages {
		if needed[i] {
			b.total += 1 + len(st.Instructions)
		}
	}
	start := time.Now()
	for i := range b.df.Stages {
		if !needed[i] {
			continue
		}
		st, err := b.buildStage(ctx, i)
		if err != nil {
			return nil, err
		}
		b.stages[i] = st
	}
	for _, k := range sortedKeys(b.opts.BuildArgs) {
		if !b.consumed[k] {
			fmt.Fprintf(b.out, "warning: build argument %s was not consumed by any ARG\n", k)
		}
	}
	img := b.stages[target].img
	d, err := img.Digest()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(b.out, "built %s in %v\n", d, time.Since(start).Round(time.Millisecond))
	return img, nil
}

// platformArgs are the automatic platform ARGs, always the host's: Gantry
// does not cross-build.
func platformArgs() map[string]string {
	p := "linux/" + goruntime.GOARCH
	return map[string]string{
		"TARGETPLATFORM": p, "TARGETOS": "linux", "TARGETARCH": goruntime.GOARCH,
		"BUILDPLATFORM": p, "BUILDOS": "linux", "BUILDARCH": goruntime.GOARCH,
	}
}

// metaArgs evaluates the ARGs before the first FROM.
func (b *builder) metaArgs() error {
	b.meta = platformArgs()
	lx := lexer{escape: b.df.Escape, lookup: func(n string) (string, bool) { v, ok := b.meta[n]; return v, ok }}
	for _, in := range b.df.MetaArgs {
		words, err := lx.words(in.Args)
		if err != nil {
			return b.fail(in.Line, invalidf("ARG: %v", err))
		}
		for _, w := range words {
			n, def, hasDef := strings.Cut(w, "=")
			if v, ok := b.opts.BuildArgs[n]; ok {
				b.consumed[n] = true
				b.meta[n] = v
			} else if hasDef {
				b.meta[n] = def
			}
		}
	}
	return nil
}

func (b *builder) metaLexer() lexer {
	return lexer{escape: b.df.Escape, lookup: func(n string) (string, bool) { v, ok := b.meta[n]; return v, ok }}
}

// targetIndex finds Options.Target.
func (b *builder) targetIndex() (int, error) {
	t := strings.ToLower(b.opts.Target)
	if t == "" {
		return len(b.df.Stages) - 1, nil
	}
	for i, st := range b.df.Stages {
		if st.Name == t {
			return i, nil
		}
	}
	if n, err := strconv.Atoi(t); err == nil && n >= 0 && n < len(b.df.Stages) {
		return n, nil
	}
	return 0, fmt.Errorf("target stage %q is not in %s: %w", b.opts.Target, b.df.Name, v1.ErrInvalid)
}

// stageRef finds the stage a FROM or --from names, among those before
// stage before; -1 when it names no stage (an image).
func (b *builder) stageRef(ref string, before int) int {
	r := strings.ToLower(ref)
	for i := 0; i < before; i++ {
		if b.df.Stages[i].Name != "" && b.df.Stages[i].Name == r {
			return i
		}
	}
	if n, err := strconv.Atoi(ref); err == nil && n >= 0 && n < before {
		return n
	}
	return -1
}

// neededStages marks the stages the target depends on through FROM and
// COPY --from.
func (b *builder) neededStages(target int) ([]bool, error) {
	needed := make([]bool, len(b.df.Stages))
	var mark func(i int) error
	mark = func(i int) error {
		if needed[i] {
			return nil
		}
		needed[i] = true
		st := b.df.Stages[i]
		base, err := b.metaLexer().word(st.Base)
		if err != nil {
			return b.fail(st.From.Line, invalidf("FROM: %v", err))
		}
		if j := b.stageRef(base, i); j >= 0 {
			if err := mark(j); err != nil {
				return err
			}
		}
		for _, in := range st.Instructions {
			from, ok := in.flag("from")
			if !ok {
				continue
			}
			ref, err := b.metaLexer().word(from)
			if err != nil {
				return b.fail(in.Line, invalidf("--from: %v", err))
			}
			if strings.EqualFold(ref, st.Name) && st.Name != "" {
				return b.fail(in.Line, invalidf("COPY --from=%s names its own stage", ref))
			}
			if j := b.stageRef(ref, i); j >= 0 {
				if err := mark(j); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return needed, mark(target)
}
