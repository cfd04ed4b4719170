package build

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	ggcr "github.com/google/go-containerregistry/pkg/v1"

	"github.com/gantry-dev/gantry/internal/runtime"
)

// session opens the build's containerd session on first use.
func (b *builder) session(ctx context.Context, in Instruction) (*session, error) {
	if b.sess != nil {
		return b.sess, nil
	}
	addr := b.opts.Containerd
	if addr == "" {
		if b.opts.ContainerdDir == "" {
			return nil, invalidf("%s needs containerd, and the build has none: set Options.Containerd or Options.ContainerdDir", in.Keyword)
		}
		d, err := runtime.StartDaemon(ctx, runtime.DaemonConfig{Dir: b.opts.ContainerdDir}, b.log)
		if err != nil {
			return nil, fmt.Errorf("start containerd for the build: %w", err)
		}
		addr = d.Address()
	}
	s, err := openSession(ctx, addr, b.opts.Tag, b.opts.HostNetwork, b.log)
	if err != nil {
		return nil, err
	}
	b.sess = s
	return s, nil
}

// keep copies a step's layer from containerd's content store into the
// cache and records the step there.
func (b *builder) keep(ctx context.Context, key string, res layerResult, createdBy string) (ggcr.Layer, error) {
	e := cacheEntry{CreatedBy: createdBy}
	if !res.empty {
		rc, err := b.sess.openBlob(ctx, res.desc)
		if err != nil {
			return nil, fmt.Errorf("read the layer: %w", err)
		}
		d, err := ggcr.NewHash(res.desc.Digest.String())
		if err != nil {
			rc.Close()
			return nil, err
		}
		err = b.cache.putBlob(d, res.desc.Size, rc)
		rc.Close()
		if err != nil {
			return nil, err
		}
		e.Layer = &layerRecord{Digest: d.String(), DiffID: res.diffID.String(), Size: res.desc.Size, MediaType: res.desc.MediaType}
	}
	if err := b.cache.put(key, e); err != nil {
		return nil, err
	}
	if e.Layer == nil {
		return nil, nil
	}
	return b.cache.layer(*e.Layer)
}

// cached looks a step up in the cache, unless the build says not to.
func (b *builder) cached(key string) (ggcr.Layer, bool) {
	if b.opts.NoCache {
		return nil, false
	}
	_, l, ok := b.cache.get(key)
	return l, ok
}

// run is a RUN step.
func (b *builder) run(ctx context.Context, st *stageState, in Instruction) error {
	args := in.Exec
	createdBy := "RUN " + strings.Join(in.Exec, " ")
	if !in.IsExec {
		args = []string{"/bin/sh", "-c", in.Args}
		createdBy = "RUN /bin/sh -c " + in.Args
	}
	argEnv := st.argEnv()
	network := "none"
	if b.opts.HostNetwork {
		network = "host"
	}
	key := stepKey(st.key, "RUN", jsonString(args), jsonString(argEnv), network)
	return b.layerStep(ctx, st, in, key, createdBy, func(s *session, a active) error {
		out := &indentWriter{w: b.out}
		err := s.run(ctx, a, runSpec{
			args: args,
			env:  append(append([]string(nil), st.cfg.Env...), argEnv...),
			cwd:  st.workdir(),
			user: st.cfg.User,
		}, out)
		out.flush()
		var ee *ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("RUN %s: %w", shorten(in.command(), 80), err)
		}
		return err
	})
}

// workdir is a WORKDIR step: the directory is made, as BuildKit makes
// it, owned by the stage's USER (0755, its missing parents too) unless
// it exists, so that a later RUN as that user can write there and a
// container with a read-only root file system can start in it. A
// directory that exists makes an empty layer, which the image does not
// carry.
func (b *builder) workdir(ctx context.Context, st *stageState, in Instruction) error {
	dir, user := st.cfg.WorkingDir, st.cfg.User
	createdBy := "WORKDIR " + dir
	key := stepKey(st.key, "WORKDIR", dir, user)
	return b.layerStep(ctx, st, in, key, createdBy, func(s *session, a active) error {
		return s.edit(ctx, a, func(root string) error {
			w := &writer{root: root}
			if user != "" {
				o, err := lookupOwner(root, user)
				if err != nil {
					return invalidf("WORKDIR %s: USER %s: %v", dir, user, err)
				}
				w.uid, w.gid = o.uid, o.gid
			}
			if _, err := w.mkdirAll(dir); err != nil {
				return invalidf("WORKDIR %s: %v", dir, err)
			}
			return nil
		})
	})
}

// layerStep makes the layer of a step that changes files: the one cached
// under key, or one that change makes on top of the stage's layers,
// committed and kept in the cache under key.
func (b *builder) layerStep(ctx context.Context, st *stageState, in Instruction, key, createdBy string, change func(s *session, a active) error) error {
	if l, ok := b.cached(key); ok {
		b.progress(in, "(cached)")
		st.addLayer(l, createdBy)
		st.key = key
		return nil
	}
	b.progress(in, "")
	start := time.Now()
	s, err := b.session(ctx, in)
	if err != nil {
		return err
	}
	parent, err := s.rootfs(ctx, st.layers, b.out)
	if err != nil {
		return err
	}
	ids, err := diffIDs(st.layers)
	if err != nil {
		return err
	}
	a, err := s.prepare(ctx, parent)
	if err != nil {
		return err
	}
	if err := change(s, a); err != nil {
		s.discard(a)
		return err
	}
	res, err := s.commit(ctx, a, ids)
	if err != nil {
		s.discard(a)
		return err
	}
	l, err := b.keep(ctx, key, res, createdBy)
	if err != nil {
		return err
	}
	b.log.Debug("made step layer", "line", in.Line, "took", time.Since(start), "empty", res.empty)
	st.addLayer(l, createdBy)
	st.key = key
	return nil
}

// command is a RUN's command as written.
func (in Instruction) command() string {
	if in.IsExec {
		return strings.Join(in.Exec, " ")
	}
	return in.Args
}

// shorten cuts s to about n bytes, on a character boundary.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// copy is a COPY or ADD step.
func (b *builder) copy(ctx context.Context, st *stageState, idx int, in Instruction, lx lexer) error {
	var words []string
	var err error
	if in.IsExec {
		words = make([]string, len(in.Exec))
		for i, w := range in.Exec {
			if words[i], err = lx.word(w); err != nil {
				return invalidf("%s: %v", in.Keyword, err)
			}
		}
	} else if words, err = lx.words(in.Args); err != nil {
		return invalidf("%s: %v", in.Keyword, err)
	}
	if len(words) < 2 {
		return invalidf("%s needs at least one source and a destination", in.Keyword)
	}
	srcs, dest := words[:len(words)-1], words[len(words)-1]
	isAdd := in.Keyword == "ADD"
	for _, s := range srcs {
		if isAdd && isURL(s) {
			return unsupportedf("ADD %s: URLs are not supported (builds do not download): fetch the file into the build context and ADD or COPY it", s)
		}
	}
	chown, _ := in.flag("chown")
	if chown, err = lx.word(chown); err != nil {
		return invalidf("--chown: %v", err)
	}
	var chmod *os.FileMode
	if v, ok := in.flag("chmod"); ok {
		if v, err = lx.word(v); err != nil {
			return invalidf("--chmod: %v", err)
		}
		n, err := strconv.ParseUint(v, 8, 32)
		if err != nil || n > 0o7777 {
			return invalidf("--chmod=%s: give the mode in octal, such as 0755", v)
		}
		m := os.FileMode(n & 0o777)
		if n&0o4000 != 0 {
			m |= os.ModeSetuid
		}
		if n&0o2000 != 0 {
			m |= os.ModeSetgid
		}
		if n&0o1000 != 0 {
			m |= os.ModeSticky
		}
		chmod = &m
	}

	// Docker's destination rules: a trailing slash (or ".") makes it a
	// directory; a relative one is below WORKDIR.
	destIsDir := strings.HasSuffix(dest, "/") || dest == "." || strings.HasSuffix(dest, "/.")
	if !path.IsAbs(dest) {
		dest = path.Join(st.workdir(), dest)
	}
	dest = path.Clean(dest)
	if len(srcs) > 1 && !destIsDir {
		return invalidf("%s with more than one source needs a destination directory ending in /", in.Keyword)
	}

	// What is copied, and the digest of it for the cache key.
	var fromLayers []ggcr.Layer
	var sources []source
	var srcKey string
	from, hasFrom := in.flag("from")
	if hasFrom {
		ref, err := b.metaLexer().word(from)
		if err != nil {
			return invalidf("--from: %v", err)
		}
		if j := b.stageRef(ref, idx); j >= 0 {
			fromLayers, srcKey = b.stages[j].layers, "stage "+b.stages[j].key
		} else {
			img, _, err := b.pull(ctx, "COPY --from="+ref, ref)
			if err != nil {
				return err
			}
			d, err := img.Digest()
			if err != nil {
				return err
			}
			if fromLayers, err = img.Layers(); err != nil {
				return err
			}
			srcKey = "image " + d.String()
		}
	} else {
		if sources, err = collectSources(b.ctxDir, srcs, b.ignore); err != nil {
			return invalidf("%s %v (in the build context %s)", in.Keyword, err, b.opts.Dir)
		}
		if srcKey, err = hashSources(sources); err != nil {
			return err
		}
	}
	createdBy := fmt.Sprintf("%s %s %s", in.Keyword, strings.Join(srcs, " "), dest)
	if destIsDir {
		createdBy += "/"
	}
	mode := ""
	if chmod != nil {
		mode = chmod.String()
	}
	key := stepKey(st.key, in.Keyword, jsonString(srcs), dest, strconv.FormatBool(destIsDir), chown, mode, srcKey)
	spec := copySpec{dest: dest, destIsDir: destIsDir, chown: chown, chmod: chmod, add: isAdd}
	return b.layerStep(ctx, st, in, key, createdBy, func(s *session, a active) error {
		return s.edit(ctx, a, func(root string) error {
			if !hasFrom {
				if err := copyInto(ctx, root, sources, spec); err != nil {
					return err
				}
				afterCopy()
				// The layer is kept under the sources' hash taken before
				// the copy: a file edited meanwhile would put its new
				// content under the old key, for a later build with the
				// old content to get.
				again, err := hashSources(sources)
				if err != nil {
					return err
				}
				if again != srcKey {
					return invalidf("%s: files of the build context changed while they were copied; build again", in.Keyword)
				}
				return nil
			}
			return s.view(ctx, fromLayers, b.out, func(src string) error {
				srcs, err := collectSources(src, srcs, nil)
				if err != nil {
					return invalidf("COPY --from=%s %v", from, err)
				}
				return copyInto(ctx, root, srcs, spec)
			})
		})
	})
}

// afterCopy runs when a COPY from the build context has copied its
// files; tests change one then.
var afterCopy = func() {}

func isURL(s string) bool {
	l := strings.ToLower(s)
	for _, p := range []string{"http://", "https://", "git@", "git://", "ftp://"} {
		if strings.HasPrefix(l, p) {
			return true
		}
	}
	return false
}

// copySpec is what a COPY or ADD does with its sources.
type copySpec struct {
	dest      string
	destIsDir bool
	chown     string
	chmod     *os.FileMode
	add       bool // extract local archives
}

// copyInto copies sources into the root filesystem mounted at root.
func copyInto(ctx context.Context, root string, sources []source, spec copySpec) error {
	w := &writer{root: root, chmod: spec.chmod}
	if spec.chown != "" {
		o, err := lookupOwner(root, spec.chown)
		if err != nil {
			return invalidf("%v", err)
		}
		w.uid, w.gid = o.uid, o.gid
	}
	destIsDir := spec.destIsDir || len(sources) > 1
	if !destIsDir {
		// Like Docker, a destination that is a directory of the image
		// receives the source: COPY app.py /app after WORKDIR /app.
		if host, err := resolveIn(root, spec.dest, true); err == nil {
			if fi, err := os.Stat(host); err == nil && fi.IsDir() {
				destIsDir = true
			}
		}
	}
	for _, s := range sources {
		if err := ctx.Err(); err != nil {
			return err
		}
		switch {
		case s.info.IsDir():
			if _, err := w.mkdirAll(spec.dest); err != nil {
				return err
			}
			for _, e := range s.entries {
				it, err := fileItem(e.host, e.info)
				if err != nil {
					return err
				}
				if err := w.put(path.Join(spec.dest, e.rel), it); err != nil {
					return err
				}
			}
		case spec.add && s.info.Mode().IsRegular():
			rc, ok, err := openArchive(ctx, s.host)
			if err != nil {
				return err
			}
			if ok {
				if _, err := w.mkdirAll(spec.dest); err != nil {
					rc.Close()
					return err
				}
				// Archives keep their owners unless --chown says otherwise.
				w.keepOwner = spec.chown == ""
				err = extract(ctx, rc, w, spec.dest)
				w.keepOwner = false
				rc.Close()
				if err != nil {
					return fmt.Errorf("extract %s: %w", s.arg, err)
				}
				continue
			}
			fallthrough
		default:
			target := spec.dest
			if destIsDir {
				target = path.Join(spec.dest, s.name)
			}
			it, err := fileItem(s.host, s.info)
			if err != nil {
				return err
			}
			if err := w.put(target, it); err != nil {
				return err
			}
		}
	}
	return w.finish()
}
