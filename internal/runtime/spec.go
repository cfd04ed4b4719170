package runtime

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/containerd/v2/contrib/seccomp"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// ContainerSpec is what the agent asks the runtime to run.
type ContainerSpec struct {
	ID     string            // containerd container ID; also names the snapshot
	Image  string            // image reference; pulled if not present
	Labels map[string]string // kept on the container, returned by List

	// Command replaces the image's entrypoint and Args its cmd, as in
	// Kubernetes: Command alone drops the image's cmd too.
	Command []string
	Args    []string
	// Env entries ("KEY=value") are added to the image's, replacing
	// variables of the same name.
	Env        []string
	WorkingDir string
	Hostname   string

	// NetNSPath is a network namespace file to join (made by the network
	// package). With neither it nor HostNetwork the container gets a
	// namespace of its own with only loopback.
	NetNSPath   string
	HostNetwork bool

	Resources Resources
	Security  Security
	Mounts    []Mount

	// LogPath is the container's log file; empty discards output.
	LogPath     string
	LogMaxSize  int64 // bytes; Config.DefaultLogMaxSize when zero
	LogMaxFiles int   // Config.DefaultLogMaxFiles when zero
}

// Resources are the cgroup limits of a container.
type Resources struct {
	// CPURequestMillis sets the CPU weight (cpu.shares, 1024 per core).
	CPURequestMillis int64
	// CPULimitMillis caps CPU time with a CFS quota; zero means no cap.
	CPULimitMillis int64
	// MemoryLimitBytes and PidsLimit take Config's defaults when zero:
	// no container runs without them.
	MemoryLimitBytes int64
	PidsLimit        int64
}

// Security loosens or tightens the secure defaults.
type Security struct {
	// Privileged gives all capabilities and devices and drops seccomp,
	// masked paths and no-new-privileges. Policy is checked before.
	Privileged     bool
	ReadOnlyRootfs bool
	RunAsUser      *int64
	RunAsGroup     *int64
	// CapAdd and CapDrop adjust the default capability set. Names may
	// omit the CAP_ prefix; "ALL" in CapDrop starts from nothing.
	CapAdd  []string
	CapDrop []string
	// Allow32Bit admits the 32-bit ABI of the node's architecture family
	// to the seccomp filter (i386 on amd64, arm on arm64). An image built
	// for that architecture gets it anyway.
	Allow32Bit bool
}

// Mount types.
const (
	MountBind  = "bind"
	MountTmpfs = "tmpfs"
)

// Mount is a bind mount of a host path or a tmpfs in the container.
type Mount struct {
	Type        string // MountBind (default) or MountTmpfs
	Source      string // host path, for bind mounts
	Destination string // absolute path in the container
	ReadOnly    bool
	// Mode of a tmpfs's root directory, 0755 when zero (e.g. 0400 or 0500
	// for secrets). SizeBytes caps a tmpfs; zero is the kernel default.
	Mode      os.FileMode
	SizeBytes int64
	// Chown gives a bind mount's source (and, for a directory, the files
	// in it) to the user and group the container's process runs as, once
	// the spec has resolved them: an image's USER may be a name that only
	// its /etc/passwd knows. Secret files use it to stay 0400 and still
	// be readable by a non-root process.
	Chown bool
}

// DefaultCapabilities is Docker's default set less CAP_NET_RAW: raw
// sockets let a container forge packets on its network, and ping works
// without them through ICMP sockets.
var DefaultCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// cpuPeriod is the CFS period used with a CPU limit, the kernel default.
const cpuPeriod = 100000

// validate checks what containerd would otherwise reject late or not at
// all.
func (s *ContainerSpec) validate() error {
	var problems []string
	if s.ID == "" {
		problems = append(problems, "no container ID")
	}
	if s.Image == "" {
		problems = append(problems, "no image")
	}
	if s.NetNSPath != "" && s.HostNetwork {
		problems = append(problems, "both a network namespace and the host network")
	}
	if s.NetNSPath != "" && !path.IsAbs(s.NetNSPath) {
		problems = append(problems, "network namespace path must be absolute")
	}
	if s.LogPath != "" && !path.IsAbs(s.LogPath) {
		problems = append(problems, "log path must be absolute")
	}
	r := s.Resources
	if r.CPURequestMillis < 0 || r.CPULimitMillis < 0 || r.MemoryLimitBytes < 0 || r.PidsLimit < 0 {
		problems = append(problems, "negative resource")
	}
	for _, m := range s.Mounts {
		switch {
		case !path.IsAbs(m.Destination):
			problems = append(problems, fmt.Sprintf("mount destination %q must be absolute", m.Destination))
		case m.Type != "" && m.Type != MountBind && m.Type != MountTmpfs:
			problems = append(problems, fmt.Sprintf("mount type %q is neither bind nor tmpfs", m.Type))
		case (m.Type == "" || m.Type == MountBind) && !path.IsAbs(m.Source):
			problems = append(problems, fmt.Sprintf("bind mount source %q must be absolute", m.Source))
		}
	}
	for _, id := range []*int64{s.Security.RunAsUser, s.Security.RunAsGroup} {
		if id != nil && (*id < 0 || *id > math.MaxInt32) {
			// The spec's IDs are uint32: 2^32 would become root.
			problems = append(problems, fmt.Sprintf("user or group ID %d is outside 0..%d", *id, math.MaxInt32))
		}
	}
	for _, c := range append(slices.Clone(s.Security.CapAdd), s.Security.CapDrop...) {
		if n := capName(c); n != "CAP_ALL" && !slices.Contains(knownCapabilities, n) {
			problems = append(problems, fmt.Sprintf("unknown capability %q", c))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("container spec %s: %s: %w", s.ID, strings.Join(problems, "; "), v1.ErrInvalid)
	}
	return nil
}

// processArgs applies Kubernetes' rules for command and args over the
// image's entrypoint and cmd.
func processArgs(img ImageInfo, command, args []string) []string {
	switch {
	case len(command) > 0:
		return append(slices.Clone(command), args...)
	case len(args) > 0:
		return append(slices.Clone(img.Entrypoint), args...)
	default:
		return append(slices.Clone(img.Entrypoint), img.Cmd...)
	}
}

// cpuShares converts a CPU request in millicores to cgroup v1 shares the
// way the kubelet does: 1024 per core, at least 2 and at most 262144 (the
// kernel's bounds; runc refuses a value above them).
func cpuShares(millis int64) uint64 {
	if millis <= 0 {
		return 0
	}
	return uint64(min(max(millis*1024/1000, 2), maxCPUShares))
}

const maxCPUShares = 1 << 18

// cpuQuota converts a CPU limit in millicores to a CFS quota over
// cpuPeriod, at least 1ms (the kernel minimum).
func cpuQuota(millis int64) int64 {
	return max(millis*cpuPeriod/1000, 1000)
}

// capabilities computes the capability set from the defaults and the
// spec's additions and removals.
func capabilities(sec Security) []string {
	caps := slices.Clone(DefaultCapabilities)
	for _, c := range sec.CapDrop {
		if n := capName(c); n == "CAP_ALL" {
			caps = nil
		} else {
			caps = slices.DeleteFunc(caps, func(x string) bool { return x == n })
		}
	}
	for _, c := range sec.CapAdd {
		if n := capName(c); n == "CAP_ALL" {
			caps = slices.Clone(knownCapabilities)
		} else if !slices.Contains(caps, n) {
			caps = append(caps, n)
		}
	}
	return caps
}

func capName(c string) string {
	c = strings.ToUpper(strings.TrimSpace(c))
	if !strings.HasPrefix(c, "CAP_") {
		c = "CAP_" + c
	}
	return c
}

// knownCapabilities are the Linux capabilities (v1.LinuxCapabilities), for
// validation and CapAdd ALL.
var knownCapabilities = func() []string {
	out := make([]string, len(v1.LinuxCapabilities))
	for i, c := range v1.LinuxCapabilities {
		out[i] = "CAP_" + c
	}
	return out
}()

// ociMounts converts the spec's mounts.
func ociMounts(ms []Mount) []specs.Mount {
	var out []specs.Mount
	for _, m := range ms {
		access := "rw"
		if m.ReadOnly {
			access = "ro"
		}
		if m.Type == MountTmpfs {
			mode := m.Mode.Perm()
			if mode == 0 {
				mode = 0o755
			}
			opts := []string{"nosuid", "nodev", "noexec", access, "mode=" + strconv.FormatUint(uint64(mode), 8)}
			if m.SizeBytes > 0 {
				opts = append(opts, "size="+strconv.FormatInt(m.SizeBytes, 10))
			}
			out = append(out, specs.Mount{Type: "tmpfs", Source: "tmpfs", Destination: m.Destination, Options: opts})
			continue
		}
		out = append(out, specs.Mount{Type: "bind", Source: m.Source, Destination: m.Destination,
			Options: []string{"rbind", "rprivate", "nosuid", "nodev", access}})
	}
	return out
}

// softOpenFiles is the soft limit of open files a container starts with
// when its hard limit is known, as under Docker: programs that loop over
// every possible descriptor (close_fds, rpm) stay fast, and servers raise
// it up to the hard limit themselves.
const softOpenFiles = 1024

// maxOpenFiles caps the hard limit a container gets: a containerd run
// with LimitNOFILE=infinity may have 2^30, and programs that raise their
// soft limit to the hard one (Go's runtime, Java) then size tables by it.
const maxOpenFiles = 1 << 20

// openFiles returns the hard limit of open files to give containers now,
// or 0 to keep containerd's default (see Config.OpenFiles).
func (d *Driver) openFiles() uint64 {
	if d.cfg.OpenFiles == nil {
		return 0
	}
	return min(d.cfg.OpenFiles(), maxOpenFiles)
}

// withOpenFiles sets the container's limit of open files to a hard limit
// of hard, at most the one runc runs with (so that it needs no
// CAP_SYS_RESOURCE: nothing is raised above runc's own), and a soft one of
// softOpenFiles, and notes hard on the container (labelOpenFiles) for
// later starts to check.
func withOpenFiles(hard uint64) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, c *containers.Container, s *oci.Spec) error {
		if s.Process == nil {
			s.Process = &specs.Process{}
		}
		l := specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Hard: hard, Soft: min(softOpenFiles, hard)}
		if i := slices.IndexFunc(s.Process.Rlimits, func(r specs.POSIXRlimit) bool { return r.Type == l.Type }); i >= 0 {
			s.Process.Rlimits[i] = l
		} else {
			s.Process.Rlimits = append(s.Process.Rlimits, l)
		}
		if c.Labels == nil {
			c.Labels = map[string]string{}
		}
		c.Labels[labelOpenFiles] = strconv.FormatUint(hard, 10)
		return nil
	}
}

// specOpts builds the OCI spec of a container: the image's config, then
// the spec's process, namespaces, mounts and limits, then the security
// settings, with the secure defaults unless the spec is privileged.
func (d *Driver) specOpts(s *ContainerSpec, img ImageInfo, image oci.Image) []oci.SpecOpts {
	opts := []oci.SpecOpts{
		oci.WithImageConfig(image),
		oci.WithProcessArgs(processArgs(img, s.Command, s.Args)...),
	}
	if len(s.Env) > 0 {
		opts = append(opts, oci.WithEnv(s.Env))
	}
	if s.WorkingDir != "" {
		opts = append(opts, oci.WithProcessCwd(s.WorkingDir))
	}
	if s.Hostname != "" {
		opts = append(opts, oci.WithHostname(s.Hostname))
	}
	switch {
	case s.HostNetwork:
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace))
	case s.NetNSPath != "":
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: s.NetNSPath}))
	}
	if len(s.Mounts) > 0 {
		opts = append(opts, oci.WithMounts(ociMounts(s.Mounts)))
	}
	// containerd's default spec caps open files at 1024, soft and hard,
	// where servers need more; where the driver knows the hard limit runc
	// runs with, containers get it.
	if hard := d.openFiles(); hard > 0 {
		opts = append(opts, withOpenFiles(hard))
	}

	r := s.Resources
	mem := r.MemoryLimitBytes
	if mem == 0 {
		mem = d.cfg.DefaultMemoryLimit
	}
	pids := r.PidsLimit
	if pids == 0 {
		pids = d.cfg.DefaultPidsLimit
	}
	opts = append(opts, oci.WithMemoryLimit(uint64(mem)), oci.WithPidsLimit(pids))
	if shares := cpuShares(r.CPURequestMillis); shares > 0 {
		opts = append(opts, oci.WithCPUShares(shares))
	}
	if r.CPULimitMillis > 0 {
		opts = append(opts, oci.WithCPUCFS(cpuQuota(r.CPULimitMillis), cpuPeriod))
	}

	sec := s.Security
	if sec.Privileged {
		opts = append(opts, oci.WithPrivileged, oci.WithAllDevicesAllowed, oci.WithHostDevices, oci.WithNewPrivileges)
	} else {
		// Capabilities first: the seccomp profile allows some syscalls
		// only to containers that hold the matching capability.
		opts = append(opts,
			oci.WithCapabilities(capabilities(sec)),
			oci.WithNoNewPrivileges,
			WithSeccompProfile(sec.Allow32Bit || isCompat32(img.Architecture)),
		)
	}
	if sec.ReadOnlyRootfs {
		opts = append(opts, oci.WithRootFSReadonly())
	}
	switch {
	case sec.RunAsUser != nil && sec.RunAsGroup != nil:
		opts = append(opts, oci.WithUIDGID(uint32(*sec.RunAsUser), uint32(*sec.RunAsGroup)))
	case sec.RunAsUser != nil:
		opts = append(opts, oci.WithUserID(uint32(*sec.RunAsUser)))
	case sec.RunAsGroup != nil:
		opts = append(opts, withGID(uint32(*sec.RunAsGroup)))
	}
	// Last: the user is final only now.
	return append(opts, withUserRecorded(s.Mounts))
}

// withUserRecorded notes the process's user on the container (labelUser)
// and gives it the sources of the mounts marked Chown.
func withUserRecorded(mounts []Mount) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, c *containers.Container, s *oci.Spec) error {
		if s.Process == nil {
			return nil
		}
		uid, gid := s.Process.User.UID, s.Process.User.GID
		if c.Labels == nil {
			c.Labels = map[string]string{}
		}
		c.Labels[labelUser] = fmt.Sprintf("%d:%d", uid, gid)
		for _, m := range mounts {
			if m.Chown {
				if err := ChownTree(m.Source, int(uid), int(gid)); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

// ChownTree gives path, and the entries of it when it is a directory
// (one level: secret directories are flat), to uid and gid. Symbolic
// links are changed themselves, never followed.
func ChownTree(path string, uid, gid int) error {
	if err := os.Lchown(path, uid, gid); err != nil {
		return fmt.Errorf("chown %s: %w", path, err)
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		if errors.Is(err, syscall.ENOTDIR) {
			return nil
		}
		return fmt.Errorf("chown %s: %w", path, err)
	}
	for _, e := range entries {
		if err := os.Lchown(filepath.Join(path, e.Name()), uid, gid); err != nil {
			return fmt.Errorf("chown %s: %w", path, err)
		}
	}
	return nil
}

// WithSeccompProfile applies containerd's default seccomp profile (the
// allow-list Docker and Kubernetes' RuntimeDefault use) for the native
// ABI only, unless allow32Bit also admits the 32-bit one of the same
// family (i386 on amd64, arm on arm64). runc compiles the filter again
// for every architecture listed, in every container it creates, and
// each costs milliseconds of its start (ADR 0008). x32 is never listed:
// mainstream kernels have it off. Without the 32-bit ABI a 32-bit
// program dies of SIGSYS at its first system call (ADR 0009).
func WithSeccompProfile(allow32Bit bool) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Linux == nil {
			s.Linux = &specs.Linux{}
		}
		p := seccomp.DefaultProfile(s)
		native, known := nativeSeccompArch[goruntime.GOARCH]
		p.Architectures = slices.DeleteFunc(p.Architectures, func(a specs.Arch) bool {
			return a == specs.ArchX32 || (known && !allow32Bit && a != native)
		})
		s.Linux.Seccomp = p
		return nil
	}
}

// nativeSeccompArch is the seccomp architecture of the node's own ABI,
// for the architectures whose default profile also lists a 32-bit one.
var nativeSeccompArch = map[string]specs.Arch{
	"amd64": specs.ArchX86_64,
	"arm64": specs.ArchAARCH64,
}

// compat32 is the 32-bit image architecture (as in an image config) a
// node of each architecture can run.
var compat32 = map[string]string{"amd64": "386", "arm64": "arm"}

// isCompat32 reports whether an image built for arch is a 32-bit one of
// this node's family, which needs its ABI in the seccomp filter.
func isCompat32(arch string) bool {
	return arch != "" && compat32[goruntime.GOARCH] == arch
}

func withGID(gid uint32) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Process == nil {
			s.Process = &specs.Process{}
		}
		// The image user's own primary group must not stay on as a
		// supplementary one (WithImageConfig lists it there), as
		// WithUIDGID and WithUserID also make sure.
		s.Process.User.GID = gid
		s.Process.User.AdditionalGids = []uint32{gid}
		return nil
	}
}
