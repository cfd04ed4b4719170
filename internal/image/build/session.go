package build

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/diff"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/labels"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/containerd/v2/pkg/rootfs"
	"github.com/containerd/errdefs"
	clog "github.com/containerd/log"
	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/gantry-dev/gantry/internal/image"
	"github.com/gantry-dev/gantry/internal/runtime"
)

// Namespace is the containerd namespace of everything a build makes:
// apart from the agent's, so that the agent never mistakes a RUN step's
// container for one of its own, and so that a build can be cleaned up by
// listing one namespace.
const Namespace = "gantry-build"

const (
	snapshotter = runtime.DefaultSnapshotter
	runcRuntime = "io.containerd.runc.v2"
	// leaseTTL bounds how long a crashed build's snapshots and content
	// outlive it; a live build keeps its lease until it ends, however
	// long, because the sweep only removes leases of dead processes.
	leaseTTL = 24 * time.Hour
	// Labels on a build's lease and containers, for the sweep.
	labelBuild = "io.gantry.build/id"
	labelPid   = "io.gantry.build/pid"
	labelTag   = "io.gantry.build/tag"
	// runPidsLimit caps the processes of a RUN step: enough for a
	// parallel compile, not enough for a fork bomb to hurt the host.
	runPidsLimit = 4096
	// emptyLayerDiffID is the digest of an empty tar (two zero blocks),
	// what the differ writes for a step that changed nothing.
	emptyLayerDiffID = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
	cleanupTimeout   = 30 * time.Second
)

// session is one build's use of containerd. Everything it makes in
// containerd (content, snapshots) belongs to its lease, so that closing
// the session removes all of it at once; containers are not leased and
// are deleted as soon as their step ends.
type session struct {
	client      *client.Client
	log         *slog.Logger
	clog        *clog.Entry
	lease       leases.Lease
	sn          snapshots.Snapshotter
	cs          content.Store
	hostNetwork bool
	// chains maps a chain ID to the committed snapshot that holds that
	// filesystem in this build. Names are private to the build, so that
	// the end of a concurrent build cannot take a snapshot away.
	chains map[digest.Digest]string
	seq    int
	ran    bool // a RUN step's container was made
}

// openSession connects to containerd at addr and starts a lease for the
// build. It first removes what crashed builds left behind.
func openSession(ctx context.Context, addr, tag string, hostNetwork bool, log *slog.Logger) (*session, error) {
	c, err := client.New(addr, client.WithDefaultNamespace(Namespace), client.WithTimeout(10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("connect to containerd at %s: %w", addr, err)
	}
	quiet := logrus.New()
	quiet.SetOutput(io.Discard)
	s := &session{
		client:      c,
		log:         log,
		clog:        logrus.NewEntry(quiet),
		sn:          c.SnapshotService(snapshotter),
		cs:          c.ContentStore(),
		hostNetwork: hostNetwork,
		chains:      map[digest.Digest]string{},
	}
	nctx := s.nsCtx(ctx)
	if _, err := c.Version(nctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("containerd at %s does not answer (is it running?): %w", addr, err)
	}
	s.sweep(nctx)
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		c.Close()
		return nil, err
	}
	id := "gantry-build-" + hex.EncodeToString(b)
	lbl := map[string]string{labelBuild: id, labelPid: strconv.Itoa(os.Getpid())}
	if tag != "" && len(tag) < 4096 {
		lbl[labelTag] = tag
	}
	s.lease, err = c.LeasesService().Create(nctx, leases.WithID(id), leases.WithExpiration(leaseTTL), leases.WithLabels(lbl))
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("create build lease: %w", err)
	}
	return s, nil
}

// nsCtx carries the build namespace and keeps containerd's client library
// from logging on the process's stderr.
func (s *session) nsCtx(ctx context.Context) context.Context {
	return clog.WithLogger(namespaces.WithNamespace(ctx, Namespace), s.clog)
}

// with is nsCtx plus the build's lease: what is made under it is the
// build's and goes when the lease does.
func (s *session) with(ctx context.Context) context.Context {
	return leases.WithLease(s.nsCtx(ctx), s.lease.ID)
}

// close deletes the lease and waits for containerd to collect what it
// held: snapshots, content, views. It uses its own deadline, so that a
// cancelled build still cleans up.
func (s *session) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	ctx = s.nsCtx(ctx)
	err := s.client.LeasesService().Delete(ctx, s.lease, leases.SynchronousDelete)
	if err != nil && !errdefs.IsNotFound(err) {
		err = fmt.Errorf("delete build lease %s: %w", s.lease.ID, err)
	} else {
		err = nil
	}
	if cerr := s.client.Close(); err == nil {
		err = cerr
	}
	if s.ran {
		removeCgroupParents()
	}
	return err
}

// removeCgroupParents removes the cgroups runc made for the build
// namespace (it removes each container's own, not their parent) if they
// are empty: another build's running step keeps them busy, and the
// removal then fails, as it should.
func removeCgroupParents() {
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", Namespace))
	for _, d := range append(dirs, filepath.Join("/sys/fs/cgroup", Namespace)) {
		_ = os.Remove(d)
	}
}

// sweep removes the leases and containers of builds whose process is
// gone (killed mid-step). Live builds, in this process or another, are
// left alone.
func (s *session) sweep(ctx context.Context) {
	ls, err := s.client.LeasesService().List(ctx, `labels."`+labelPid+`"`)
	if err != nil {
		s.log.Warn("list build leases", "err", err)
		return
	}
	live := map[string]bool{}
	for _, l := range ls {
		pid, _ := strconv.Atoi(l.Labels[labelPid])
		if pid > 0 && processAlive(pid) {
			live[l.ID] = true
			continue
		}
		s.log.Info("removing the leftovers of a build that died", "lease", l.ID)
		if err := s.client.LeasesService().Delete(ctx, l, leases.SynchronousDelete); err != nil && !errdefs.IsNotFound(err) {
			s.log.Warn("delete stale build lease", "lease", l.ID, "err", err)
		}
	}
	cs, err := s.client.Containers(ctx, `labels."`+labelBuild+`"`)
	if err != nil {
		s.log.Warn("list build containers", "err", err)
		return
	}
	for _, c := range cs {
		lbl, err := c.Labels(ctx)
		if err != nil || live[lbl[labelBuild]] {
			continue
		}
		if t, err := c.Task(ctx, nil); err == nil {
			_, _ = t.Delete(ctx, client.WithProcessKill)
		}
		if err := c.Delete(ctx); err != nil && !errdefs.IsNotFound(err) {
			s.log.Warn("delete stale build container", "id", c.ID(), "err", err)
		}
	}
}

func processAlive(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// key returns a new snapshot key or container ID of this build.
func (s *session) key(what string) string {
	s.seq++
	return fmt.Sprintf("%s-%s-%d", s.lease.ID, what, s.seq)
}

func descriptorOf(l ggcr.Layer) (ocispec.Descriptor, error) {
	d, err := l.Digest()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	size, err := l.Size()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	mt, err := l.MediaType()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return ocispec.Descriptor{MediaType: string(mt), Digest: digest.Digest(d.String()), Size: size}, nil
}

func diffIDs(layers []ggcr.Layer) ([]digest.Digest, error) {
	out := make([]digest.Digest, 0, len(layers))
	for _, l := range layers {
		d, err := l.DiffID()
		if err != nil {
			return nil, fmt.Errorf("layer diff ID: %w", err)
		}
		out = append(out, digest.Digest(d.String()))
	}
	return out, nil
}

// rootfs makes sure a committed snapshot holds the filesystem of layers
// and returns its name ("" for no layers). Layers already applied in
// this build are not applied again; the others are fetched into the
// content store (base layers from the registry, the build's own from its
// cache) and applied by containerd's diff service.
func (s *session) rootfs(ctx context.Context, layers []ggcr.Layer, out io.Writer) (string, error) {
	ctx = s.with(ctx)
	ids, err := diffIDs(layers)
	if err != nil {
		return "", err
	}
	parent := ""
	for i, l := range layers {
		chain := identity.ChainID(ids[:i+1])
		if name, ok := s.chains[chain]; ok {
			parent = name
			continue
		}
		desc, err := s.ensureContent(ctx, l, out)
		if err != nil {
			return "", err
		}
		key := s.key("apply")
		mounts, err := s.sn.Prepare(ctx, key, parent)
		if err != nil {
			return "", fmt.Errorf("prepare snapshot: %w", err)
		}
		if _, err := s.client.DiffService().Apply(ctx, desc, mounts); err != nil {
			_ = s.sn.Remove(ctx, key)
			return "", fmt.Errorf("apply layer %s: %w", desc.Digest, err)
		}
		name := s.lease.ID + "-" + chain.Encoded()
		if err := s.sn.Commit(ctx, name, key); err != nil {
			_ = s.sn.Remove(ctx, key)
			return "", fmt.Errorf("commit snapshot: %w", err)
		}
		s.chains[chain] = name
		parent = name
	}
	return parent, nil
}

// ensureContent puts a layer's blob in containerd's content store under
// the build's lease.
func (s *session) ensureContent(ctx context.Context, l ggcr.Layer, out io.Writer) (ocispec.Descriptor, error) {
	desc, err := descriptorOf(l)
	if err != nil {
		return desc, err
	}
	if _, err := s.cs.Info(ctx, desc.Digest); err == nil {
		// Present, perhaps for another build: hold it for this one too.
		if err := s.hold(ctx, desc.Digest); err == nil {
			return desc, nil
		}
	}
	rc, err := l.Compressed()
	if err != nil {
		return desc, fmt.Errorf("fetch layer %s: %w", desc.Digest, err)
	}
	defer rc.Close()
	var r io.Reader = rc
	if _, cached := l.(*blobLayer); !cached && out != nil {
		bar := image.NewBar(out, "fetch layer "+desc.Digest.Encoded()[:12])
		defer bar.Finish()
		r = &countingReader{r: rc, total: desc.Size, update: bar.Update}
	}
	// The ref is the build's own, so that two builds fetching the same
	// layer do not wait on each other's ingest lock.
	if err := content.WriteBlob(ctx, s.cs, s.lease.ID+"-"+desc.Digest.Encoded(), r, desc); err != nil {
		return desc, fmt.Errorf("store layer %s in containerd: %w", desc.Digest, err)
	}
	// When another build wrote it first, WriteBlob found it there: make
	// sure this build's lease holds it, whichever build ends first.
	return desc, s.hold(ctx, desc.Digest)
}

// hold adds a blob to the build's lease.
func (s *session) hold(ctx context.Context, d digest.Digest) error {
	err := s.client.LeasesService().AddResource(s.with(ctx), s.lease, leases.Resource{ID: d.String(), Type: "content"})
	if err != nil && !errdefs.IsAlreadyExists(err) {
		return fmt.Errorf("hold %s for the build: %w", d, err)
	}
	return nil
}

type countingReader struct {
	r      io.Reader
	done   int64
	total  int64
	update func(done, total int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.done += int64(n)
	c.update(c.done, c.total)
	return n, err
}

// active is a writable snapshot for one step.
type active struct {
	key    string
	mounts []mount.Mount
}

func (s *session) prepare(ctx context.Context, parent string) (active, error) {
	key := s.key("step")
	m, err := s.sn.Prepare(s.with(ctx), key, parent)
	if err != nil {
		return active{}, fmt.Errorf("prepare snapshot: %w", err)
	}
	return active{key: key, mounts: m}, nil
}

// discard removes a step's snapshot after a failure.
func (s *session) discard(a active) {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if err := s.sn.Remove(s.with(ctx), a.key); err != nil && !errdefs.IsNotFound(err) {
		s.log.Warn("remove step snapshot", "key", a.key, "err", err)
	}
}

// view mounts the filesystem of layers read-only for f.
func (s *session) view(ctx context.Context, layers []ggcr.Layer, out io.Writer, f func(root string) error) error {
	parent, err := s.rootfs(ctx, layers, out)
	if err != nil {
		return err
	}
	if parent == "" {
		dir, err := os.MkdirTemp("", "gantry-build-empty-")
		if err != nil {
			return err
		}
		defer os.Remove(dir)
		return f(dir)
	}
	ctx = s.with(ctx)
	key := s.key("view")
	mounts, err := s.sn.View(ctx, key, parent)
	if err != nil {
		return fmt.Errorf("view snapshot: %w", err)
	}
	defer s.discard(active{key: key})
	return withMount(ctx, mounts, true, f)
}

// edit mounts a step's snapshot read-write for f.
func (s *session) edit(ctx context.Context, a active, f func(root string) error) error {
	return withMount(s.with(ctx), a.mounts, false, f)
}

// withMount mounts mounts on a temporary directory for f, and returns f's
// error as it is: containerd's helper wraps it in the name of the
// temporary directory, which means nothing to the user.
func withMount(ctx context.Context, mounts []mount.Mount, readOnly bool, f func(root string) error) error {
	var ferr error
	call := func(root string) error {
		ferr = f(root)
		return ferr
	}
	var err error
	if readOnly {
		err = mount.WithReadonlyTempMount(ctx, mounts, call)
	} else {
		err = mount.WithTempMount(ctx, mounts, call)
	}
	if ferr != nil {
		return ferr
	}
	return err
}

// layerResult is the layer a step made, in containerd's content store,
// or none when the step changed nothing.
type layerResult struct {
	empty  bool
	desc   ocispec.Descriptor
	diffID digest.Digest
}

// commit computes the changes of a step's snapshot against its parent
// with containerd's diff service, as a gzip-compressed layer in the
// content store, and commits the snapshot as that layer's chain, so that
// later steps of this build start from it without applying anything.
// parent holds the diff IDs of the layers below.
func (s *session) commit(ctx context.Context, a active, parent []digest.Digest) (layerResult, error) {
	ctx = s.with(ctx)
	desc, err := rootfs.CreateDiff(ctx, a.key, s.sn, s.client.DiffService(),
		diff.WithMediaType(ocispec.MediaTypeImageLayerGzip),
		diff.WithReference("gantry-build-diff-"+a.key))
	if err != nil {
		return layerResult{}, fmt.Errorf("compute the layer: %w", err)
	}
	if err := s.hold(ctx, desc.Digest); err != nil {
		return layerResult{}, err
	}
	info, err := s.cs.Info(ctx, desc.Digest)
	if err != nil {
		return layerResult{}, fmt.Errorf("layer %s: %w", desc.Digest, err)
	}
	diffID, err := digest.Parse(info.Labels[labels.LabelUncompressed])
	if err != nil {
		return layerResult{}, fmt.Errorf("layer %s has no uncompressed digest: %w", desc.Digest, err)
	}
	if diffID.String() == emptyLayerDiffID {
		s.discard(a)
		return layerResult{empty: true}, nil
	}
	chain := identity.ChainID(append(append([]digest.Digest(nil), parent...), diffID))
	if _, ok := s.chains[chain]; ok {
		s.discard(a)
	} else {
		name := s.lease.ID + "-" + chain.Encoded()
		if err := s.sn.Commit(ctx, name, a.key); err != nil {
			return layerResult{}, fmt.Errorf("commit snapshot: %w", err)
		}
		s.chains[chain] = name
	}
	return layerResult{desc: desc, diffID: diffID}, nil
}

// openBlob reads a blob of the content store.
func (s *session) openBlob(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	ra, err := s.cs.ReaderAt(s.with(ctx), desc)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{content.NewReader(ra), ra}, nil
}

// runSpec is the process of a RUN step.
type runSpec struct {
	args []string
	env  []string
	cwd  string
	user string
}

// ExitError is a RUN command that ended with a non-zero exit code.
type ExitError struct {
	Code int
}

func (e *ExitError) Error() string { return fmt.Sprintf("the command exited with code %d", e.Code) }

// run runs a RUN step's command in a container on a's snapshot, its
// output going to out, and removes the container when it ends. The
// container has Gantry's secure defaults: no new privileges, the default
// seccomp profile and the trimmed capability set of the runtime package,
// masked /proc paths, a pids limit, and no network (only loopback)
// unless the build asks for the host's.
func (s *session) run(ctx context.Context, a active, rs runSpec, out io.Writer) error {
	ctx = s.with(ctx)
	id := s.key("run")
	s.ran = true
	opts := []oci.SpecOpts{
		oci.WithProcessArgs(rs.args...),
		oci.WithEnv(rs.env),
		oci.WithProcessCwd(rs.cwd),
		oci.WithHostname("gantry-build"),
		oci.WithCapabilities(runtime.DefaultCapabilities),
		oci.WithNoNewPrivileges,
		// A build step runs whatever tools the Dockerfile brings, 32-bit
		// ones included, as under docker build; its start time matters
		// less than an app's.
		runtime.WithSeccompProfile(true),
		oci.WithPidsLimit(runPidsLimit),
	}
	if rs.user != "" {
		u, _, _ := strings.Cut(rs.user, ":")
		opts = append(opts, oci.WithUser(rs.user), oci.WithAdditionalGIDs(u))
	}
	if s.hostNetwork {
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace), oci.WithHostResolvconf, oci.WithHostHostsFile)
	}
	c, err := s.client.NewContainer(ctx, id,
		client.WithSnapshotter(snapshotter),
		client.WithSnapshot(a.key),
		client.WithRuntime(runcRuntime, nil),
		client.WithContainerLabels(map[string]string{labelBuild: s.lease.ID}),
		client.WithNewSpec(opts...),
	)
	if err != nil {
		return fmt.Errorf("create the step's container: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if err := c.Delete(s.with(cctx)); err != nil && !errdefs.IsNotFound(err) {
			s.log.Warn("delete step container", "id", id, "err", err)
		}
	}()
	t, err := c.NewTask(ctx, cio.NewCreator(cio.WithStreams(nil, out, out)))
	if err != nil {
		return fmt.Errorf("create the step's task: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		// Delete waits for the output to be copied out, then removes the
		// task; the kill is for a task still running after a failure.
		if _, err := t.Delete(s.with(cctx), client.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			s.log.Warn("delete step task", "id", id, "err", err)
		}
	}()
	exited, err := t.Wait(ctx)
	if err != nil {
		return fmt.Errorf("wait for the step: %w", cancelled(ctx, err))
	}
	if err := t.Start(ctx); err != nil {
		return fmt.Errorf("start the step: %w", err)
	}
	select {
	case st := <-exited:
		code, _, err := st.Result()
		if err != nil {
			// A cancelled build ends the wait's stream too, and that may
			// come first; the deferred Delete kills the task.
			return fmt.Errorf("wait for the step: %w", cancelled(ctx, err))
		}
		if code != 0 {
			return &ExitError{Code: int(code)}
		}
		return nil
	case <-ctx.Done():
		kctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		_ = t.Kill(s.with(kctx), syscall.SIGKILL)
		select {
		case <-exited:
		case <-kctx.Done():
		}
		return ctx.Err()
	}
}

// cancelled is ctx's error when ctx has ended (containerd reports it as a
// gRPC status, which errors.Is does not match with context.Canceled),
// and err otherwise.
func cancelled(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// StartContainerd adopts the private containerd running under dir, or
// starts one there, for a caller that wants its address up front (see
// Options.ContainerdDir for starting it only when a step needs it). The
// daemon is left running when the caller exits, as the agent's is, so
// that the next build adopts it; `gantry down` stops it.
func StartContainerd(ctx context.Context, dir string, log *slog.Logger) (*runtime.Daemon, error) {
	return runtime.StartDaemon(ctx, runtime.DaemonConfig{Dir: dir}, log)
}
