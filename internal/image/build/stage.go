package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path"
	goruntime "runtime"
	"strconv"
	"strings"

	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/image"
)

// stageState is a stage being built.
type stageState struct {
	def     *Stage
	base    ggcr.Image
	layers  []ggcr.Layer // all of them, the base's first
	added   []mutate.Addendum
	cfg     ggcr.Config
	history []ggcr.History
	os      string
	arch    string
	key     string         // chain key of the steps so far
	args    map[string]arg // ARGs declared in the stage
	cmdSet  bool           // CMD given in this stage (ENTRYPOINT keeps it)
	img     ggcr.Image     // the result, once built
}

type arg struct {
	value string
	set   bool
}

// lookup is the variables substitution sees: ENV first, then ARGs.
func (st *stageState) lookup(name string) (string, bool) {
	for i := len(st.cfg.Env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(st.cfg.Env[i], "="); ok && k == name {
			return v, true
		}
	}
	if a, ok := st.args[name]; ok && a.set {
		return a.value, true
	}
	return "", false
}

// argEnv is the ARGs a RUN sees in its environment, KEY=VALUE sorted,
// less those an ENV of the same name overrides.
func (st *stageState) argEnv() []string {
	var out []string
	for _, k := range sortedKeys(st.args) {
		a := st.args[k]
		if !a.set {
			continue
		}
		overridden := false
		for _, e := range st.cfg.Env {
			if strings.HasPrefix(e, k+"=") {
				overridden = true
				break
			}
		}
		if !overridden {
			out = append(out, k+"="+a.value)
		}
	}
	return out
}

func (st *stageState) setEnv(k, v string) {
	for i, e := range st.cfg.Env {
		if strings.HasPrefix(e, k+"=") {
			st.cfg.Env[i] = k + "=" + v
			return
		}
	}
	st.cfg.Env = append(st.cfg.Env, k+"="+v)
}

// stepKey chains a step onto the key of the steps before it.
func stepKey(prev string, parts ...string) string {
	h := sha256.New()
	h.Write([]byte(prev))
	for _, p := range parts {
		h.Write([]byte{0})
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func (b *builder) buildStage(ctx context.Context, idx int) (*stageState, error) {
	def := &b.df.Stages[idx]
	st := &stageState{def: def, args: map[string]arg{}}
	if err := b.from(ctx, st, idx); err != nil {
		return nil, b.fail(def.From.Line, err)
	}
	for _, in := range def.Instructions {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := b.instruction(ctx, st, idx, in); err != nil {
			return nil, b.fail(in.Line, err)
		}
	}
	img, err := st.image()
	if err != nil {
		return nil, b.fail(def.From.Line, fmt.Errorf("assemble the image: %w", err))
	}
	st.img = img
	return st, nil
}

// from starts a stage from scratch, an earlier stage or a registry image.
func (b *builder) from(ctx context.Context, st *stageState, idx int) error {
	lx := b.metaLexer()
	if st.def.Platform != "" {
		p, err := lx.word(st.def.Platform)
		if err != nil {
			return invalidf("FROM --platform: %v", err)
		}
		if want := "linux/" + goruntime.GOARCH; p != want && !strings.HasPrefix(p, want+"/") {
			return unsupportedf("FROM --platform=%s: builds are for this machine's platform, %s", p, want)
		}
	}
	ref, err := lx.word(st.def.Base)
	if err != nil {
		return invalidf("FROM: %v", err)
	}
	note := ""
	switch j := b.stageRef(ref, idx); {
	case j >= 0:
		prev := b.stages[j]
		st.base, st.key = prev.img, stepKey(prev.key, "FROM stage")
	case strings.EqualFold(ref, "scratch"):
		st.base = mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
		st.key = stepKey("", "FROM scratch")
	default:
		img, resolved, err := b.pull(ctx, "FROM "+ref, ref)
		if err != nil {
			return err
		}
		d, err := img.Digest()
		if err != nil {
			return err
		}
		st.base, st.key = img, stepKey("", "FROM", d.String())
		note = resolved
	}
	b.progress(st.def.From, note)

	cf, err := st.base.ConfigFile()
	if err != nil {
		return fmt.Errorf("read the configuration of %s: %w", ref, err)
	}
	if st.layers, err = st.base.Layers(); err != nil {
		return fmt.Errorf("list the layers of %s: %w", ref, err)
	}
	st.cfg = *cf.Config.DeepCopy()
	st.os, st.arch = cf.OS, cf.Architecture
	if st.os == "" {
		st.os, st.arch = "linux", goruntime.GOARCH
	}
	if _, ok := st.lookup("PATH"); !ok {
		st.cfg.Env = append(st.cfg.Env, defaultPath)
	}
	// History must have one non-empty entry per layer; a base without
	// it (many tools write none) gets plain entries.
	nonEmpty := 0
	for _, h := range cf.History {
		if !h.EmptyLayer {
			nonEmpty++
		}
	}
	if nonEmpty == len(st.layers) {
		st.history = append([]ggcr.History(nil), cf.History...)
	} else {
		st.history = make([]ggcr.History, len(st.layers))
	}
	return nil
}

// pull resolves an image of the registry that what (a FROM or a
// COPY --from) names.
func (b *builder) pull(ctx context.Context, what, ref string) (ggcr.Image, string, error) {
	if b.opts.Registry == "" {
		return nil, "", invalidf("%s: no registry to pull it from", what)
	}
	ns := b.opts.Namespace
	if ns == "" {
		ns = "library"
	}
	candidates := []string{image.Reference(b.opts.Registry, ns, ref)}
	if !strings.Contains(strings.SplitN(ref, "@", 2)[0], "/") && ns != "library" {
		candidates = append(candidates, image.Reference(b.opts.Registry, "library", ref))
	}
	var tried []string
	for _, full := range candidates {
		r, err := b.opts.Auth.Parse(full)
		if err != nil {
			return nil, "", invalidf("%s: %v", what, err)
		}
		if reg := r.Context().RegistryStr(); reg != strings.TrimSuffix(b.opts.Registry, "/") {
			return nil, "", invalidf("%s: images come from the cluster registry %s, not %s: push the image there first (gantry image push, or skopeo copy)", what, b.opts.Registry, reg)
		}
		img, err := remote.Image(r, append(b.opts.Auth.RemoteOptions(ctx), remote.WithPlatform(ggcr.Platform{OS: "linux", Architecture: goruntime.GOARCH}))...)
		var te *transport.Error
		if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
			tried = append(tried, r.Context().RepositoryStr()+":"+r.Identifier())
			continue
		}
		if err != nil {
			return nil, "", fmt.Errorf("%s: pull %s: %w", what, full, err)
		}
		d, err := img.Digest()
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", what, err)
		}
		return img, r.Context().Name() + "@" + d.String(), nil
	}
	return nil, "", &kindError{
		msg:  fmt.Sprintf("%s: the registry has no %s: push it first (gantry image seed pushes library/busybox)", what, strings.Join(tried, " nor ")),
		kind: v1.ErrNotFound,
	}
}

// instruction runs one instruction of a stage.
func (b *builder) instruction(ctx context.Context, st *stageState, idx int, in Instruction) error {
	lx := lexer{escape: b.df.Escape, lookup: st.lookup}
	switch in.Keyword {
	case "ARG":
		b.progress(in, "")
		words, err := lx.words(in.Args)
		if err != nil {
			return invalidf("ARG: %v", err)
		}
		for _, w := range words {
			n, def, hasDef := strings.Cut(w, "=")
			a := arg{}
			switch v, ok := b.opts.BuildArgs[n]; {
			case ok:
				b.consumed[n] = true
				a = arg{v, true}
			case hasDef:
				a = arg{def, true}
			default:
				if v, ok := b.meta[n]; ok {
					a = arg{v, true}
				}
			}
			st.args[n] = a
		}
		return nil
	case "RUN":
		return b.run(ctx, st, in)
	case "COPY", "ADD":
		return b.copy(ctx, st, idx, in, lx)
	}
	var change string
	switch in.Keyword {
	case "ENV":
		pairs, err := lx.pairs(in.Args, "ENV")
		if err != nil {
			return err
		}
		var parts []string
		for _, p := range pairs {
			st.setEnv(p[0], p[1])
			parts = append(parts, p[0]+"="+p[1])
		}
		change = "ENV " + strings.Join(parts, " ")
	case "LABEL":
		pairs, err := lx.pairs(in.Args, "LABEL")
		if err != nil {
			return err
		}
		if st.cfg.Labels == nil {
			st.cfg.Labels = map[string]string{}
		}
		var parts []string
		for _, p := range pairs {
			st.cfg.Labels[p[0]] = p[1]
			parts = append(parts, p[0]+"="+p[1])
		}
		change = "LABEL " + strings.Join(parts, " ")
	case "WORKDIR":
		dir, err := lx.word(in.Args)
		if err != nil {
			return invalidf("WORKDIR: %v", err)
		}
		if dir == "" {
			return invalidf("WORKDIR needs a directory")
		}
		if !path.IsAbs(dir) {
			dir = path.Join(st.workdir(), dir)
		}
		st.cfg.WorkingDir = path.Clean(dir)
		return b.workdir(ctx, st, in)
	case "USER":
		u, err := lx.word(in.Args)
		if err != nil {
			return invalidf("USER: %v", err)
		}
		if u == "" {
			return invalidf("USER needs a user")
		}
		st.cfg.User = u
		change = "USER " + u
	case "EXPOSE":
		words, err := lx.words(in.Args)
		if err != nil {
			return invalidf("EXPOSE: %v", err)
		}
		if st.cfg.ExposedPorts == nil {
			st.cfg.ExposedPorts = map[string]struct{}{}
		}
		// A variable holding several ports (ARG PORTS="80 443", EXPOSE
		// $PORTS) exposes each, as under BuildKit, which splits the
		// expansion of an EXPOSE word on white space.
		var split []string
		for _, w := range words {
			split = append(split, strings.Fields(w)...)
		}
		var ports []string
		for _, w := range split {
			ps, err := parsePorts(w)
			if err != nil {
				return err
			}
			for _, p := range ps {
				st.cfg.ExposedPorts[p] = struct{}{}
			}
			ports = append(ports, ps...)
		}
		change = "EXPOSE " + strings.Join(ports, " ")
	case "CMD", "ENTRYPOINT":
		cmd := in.Exec
		if !in.IsExec {
			cmd = []string{"/bin/sh", "-c", in.Args}
		}
		if cmd == nil {
			cmd = []string{}
		}
		if in.Keyword == "CMD" {
			st.cfg.Cmd, st.cmdSet = cmd, true
		} else {
			st.cfg.Entrypoint = cmd
			// A new entrypoint makes an inherited CMD meaningless.
			if !st.cmdSet {
				st.cfg.Cmd = nil
			}
		}
		change = in.Keyword + " " + jsonString(cmd)
	default:
		return invalidf("unknown instruction %s", in.Keyword)
	}
	b.progress(in, "")
	st.key = stepKey(st.key, change)
	st.history = append(st.history, ggcr.History{Created: epoch, CreatedBy: change, Comment: "gantry build", EmptyLayer: true})
	return nil
}

func (st *stageState) workdir() string {
	if st.cfg.WorkingDir == "" {
		return "/"
	}
	return st.cfg.WorkingDir
}

// parsePorts reads an EXPOSE word: PORT, PORT/PROTO or a range
// FIRST-LAST[/PROTO].
func parsePorts(w string) ([]string, error) {
	spec, proto, hasProto := strings.Cut(w, "/")
	proto = strings.ToLower(proto)
	if !hasProto {
		proto = "tcp"
	}
	if proto != "tcp" && proto != "udp" && proto != "sctp" {
		return nil, invalidf("EXPOSE %s: protocol must be tcp, udp or sctp", w)
	}
	lo, hi, isRange := strings.Cut(spec, "-")
	if !isRange {
		hi = lo
	}
	first, err1 := strconv.Atoi(lo)
	last, err2 := strconv.Atoi(hi)
	if err1 != nil || err2 != nil || first < 1 || last > 65535 || first > last {
		return nil, invalidf("EXPOSE %s: not a port (1-65535) or range of ports", w)
	}
	if last-first >= 1024 {
		return nil, invalidf("EXPOSE %s: a range of more than 1024 ports", w)
	}
	var out []string
	for p := first; p <= last; p++ {
		out = append(out, strconv.Itoa(p)+"/"+proto)
	}
	return out, nil
}

// image assembles the stage's image: the base, the layers the stage
// added, and its configuration.
func (st *stageState) image() (ggcr.Image, error) {
	// Keep the base's family of media types: an image pulled in Docker's
	// format stays in it, with the build's layers marked as Docker
	// layers (they are the same gzip tars), rather than an OCI manifest
	// listing Docker layers.
	manifestType, configType, layerType := types.OCIManifestSchema1, types.OCIConfigJSON, types.OCILayer
	if mt, err := st.base.MediaType(); err == nil && mt == types.DockerManifestSchema2 {
		manifestType, configType, layerType = types.DockerManifestSchema2, types.DockerConfigJSON, types.DockerLayer
	}
	img := st.base
	var err error
	if len(st.added) > 0 {
		added := make([]mutate.Addendum, len(st.added))
		for i, a := range st.added {
			a.MediaType = layerType
			added[i] = a
		}
		if img, err = mutate.Append(img, added...); err != nil {
			return nil, err
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Config = st.cfg
	cf.History = st.history
	cf.Created = epoch
	cf.OS, cf.Architecture = st.os, st.arch
	cf.Container, cf.DockerVersion = "", ""
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, err
	}
	img = mutate.MediaType(img, manifestType)
	return mutate.ConfigMediaType(img, configType), nil
}

// addLayer appends a layer step's result to the stage.
func (st *stageState) addLayer(l ggcr.Layer, createdBy string) {
	h := ggcr.History{Created: epoch, CreatedBy: createdBy, Comment: "gantry build", EmptyLayer: l == nil}
	st.history = append(st.history, h)
	if l == nil {
		return
	}
	st.layers = append(st.layers, l)
	st.added = append(st.added, mutate.Addendum{Layer: l, History: h})
}
