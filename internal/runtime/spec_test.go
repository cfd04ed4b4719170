package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/contrib/seccomp"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

func TestProcessArgsFollowKubernetesRules(t *testing.T) {
	img := ImageInfo{Entrypoint: []string{"/entry"}, Cmd: []string{"--default"}}
	tests := []struct {
		name          string
		command, args []string
		want          []string
	}{
		{name: "neither keeps the image's entrypoint and cmd", want: []string{"/entry", "--default"}},
		{name: "a command replaces entrypoint and cmd", command: []string{"/bin/sh"}, want: []string{"/bin/sh"}},
		{name: "args replace only the cmd", args: []string{"--flag"}, want: []string{"/entry", "--flag"}},
		{name: "command and args replace both", command: []string{"/bin/sh"}, args: []string{"-c", "x"}, want: []string{"/bin/sh", "-c", "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := processArgs(img, tt.command, tt.args); !slices.Equal(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
	t.Run("the image's slices are not modified", func(t *testing.T) {
		ep := make([]string, 1, 4)
		ep[0] = "/e"
		processArgs(ImageInfo{Entrypoint: ep}, nil, []string{"a"})
		processArgs(ImageInfo{Entrypoint: ep}, nil, []string{"b"})
		if got := ep[:2]; got[1] != "" {
			t.Fatalf("entrypoint backing array written: %q", got)
		}
	})
}

func TestCPUConversions(t *testing.T) {
	tests := []struct {
		millis int64
		shares uint64
		quota  int64
	}{
		{millis: 1000, shares: 1024, quota: 100000},
		{millis: 250, shares: 256, quota: 25000},
		{millis: 1, shares: 2, quota: 1000},
		{millis: 2500, shares: 2560, quota: 250000},
		{millis: 256000, shares: 262144, quota: 25600000},
		{millis: 1000000, shares: 262144, quota: 100000000},
	}
	for _, tt := range tests {
		if got := cpuShares(tt.millis); got != tt.shares {
			t.Errorf("cpuShares(%d) = %d, want %d", tt.millis, got, tt.shares)
		}
		if got := cpuQuota(tt.millis); got != tt.quota {
			t.Errorf("cpuQuota(%d) = %d, want %d", tt.millis, got, tt.quota)
		}
	}
	if cpuShares(0) != 0 {
		t.Error("no request should leave shares at the default")
	}
}

func TestCapabilities(t *testing.T) {
	tests := []struct {
		name    string
		sec     Security
		has     []string
		hasNot  []string
		exactly []string
	}{
		{name: "the default set has no NET_RAW", has: []string{"CAP_CHOWN", "CAP_NET_BIND_SERVICE"}, hasNot: []string{"CAP_NET_RAW", "CAP_SYS_ADMIN"}},
		{name: "added capabilities may omit the prefix", sec: Security{CapAdd: []string{"net_admin"}}, has: []string{"CAP_NET_ADMIN", "CAP_CHOWN"}},
		{name: "dropped capabilities go", sec: Security{CapDrop: []string{"CAP_CHOWN"}}, hasNot: []string{"CAP_CHOWN"}, has: []string{"CAP_KILL"}},
		{name: "drop ALL then add one leaves exactly that one", sec: Security{CapDrop: []string{"ALL"}, CapAdd: []string{"NET_BIND_SERVICE"}}, exactly: []string{"CAP_NET_BIND_SERVICE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := capabilities(tt.sec)
			for _, c := range tt.has {
				if !slices.Contains(got, c) {
					t.Errorf("missing %s in %v", c, got)
				}
			}
			for _, c := range tt.hasNot {
				if slices.Contains(got, c) {
					t.Errorf("unexpected %s in %v", c, got)
				}
			}
			if tt.exactly != nil && !slices.Equal(got, tt.exactly) {
				t.Errorf("got %v, want %v", got, tt.exactly)
			}
		})
	}
}

func TestValidateRejectsBadSpecs(t *testing.T) {
	ok := func() *ContainerSpec { return &ContainerSpec{ID: "c", Image: "busybox"} }
	tests := []struct {
		name   string
		mutate func(*ContainerSpec)
		want   string
	}{
		{name: "no ID", mutate: func(s *ContainerSpec) { s.ID = "" }, want: "no container ID"},
		{name: "no image", mutate: func(s *ContainerSpec) { s.Image = "" }, want: "no image"},
		{name: "two networks", mutate: func(s *ContainerSpec) { s.NetNSPath, s.HostNetwork = "/run/netns/x", true }, want: "both"},
		{name: "a relative log path", mutate: func(s *ContainerSpec) { s.LogPath = "log" }, want: "log path"},
		{name: "a negative limit", mutate: func(s *ContainerSpec) { s.Resources.MemoryLimitBytes = -1 }, want: "negative"},
		{name: "a relative mount", mutate: func(s *ContainerSpec) { s.Mounts = []Mount{{Source: "/x", Destination: "y"}} }, want: "destination"},
		{name: "an unknown mount type", mutate: func(s *ContainerSpec) { s.Mounts = []Mount{{Type: "nfs", Destination: "/y"}} }, want: "neither"},
		{name: "an unknown capability", mutate: func(s *ContainerSpec) { s.Security.CapAdd = []string{"CAP_FLY"} }, want: "unknown capability"},
		{name: "a uid that would wrap to root", mutate: func(s *ContainerSpec) { u := int64(1) << 32; s.Security.RunAsUser = &u }, want: "outside 0..2147483647"},
		{name: "a gid past 2^31-1", mutate: func(s *ContainerSpec) { g := int64(1) << 31; s.Security.RunAsGroup = &g }, want: "outside"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ok()
			tt.mutate(s)
			err := s.validate()
			if !errors.Is(err, v1.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("validate() = %v, want ErrInvalid mentioning %q", err, tt.want)
			}
		})
	}
	if err := ok().validate(); err != nil {
		t.Fatalf("a minimal spec is rejected: %v", err)
	}
}

func TestMountsBecomeOCIMounts(t *testing.T) {
	got := ociMounts([]Mount{
		{Source: "/host/resolv.conf", Destination: "/etc/resolv.conf", ReadOnly: true},
		{Type: MountTmpfs, Destination: "/run/secrets", Mode: 0o400, SizeBytes: 1 << 20},
	})
	if len(got) != 2 {
		t.Fatalf("got %d mounts", len(got))
	}
	if got[0].Type != "bind" || !slices.Contains(got[0].Options, "ro") || !slices.Contains(got[0].Options, "rbind") {
		t.Errorf("bind mount = %+v", got[0])
	}
	if got[1].Type != "tmpfs" || !slices.Contains(got[1].Options, "mode=400") || !slices.Contains(got[1].Options, "size=1048576") || !slices.Contains(got[1].Options, "rw") {
		t.Errorf("tmpfs mount = %+v", got[1])
	}
}

func TestNormalizeRef(t *testing.T) {
	tests := map[string]string{
		"busybox":                    "docker.io/library/busybox:latest",
		"127.0.0.1:5000/team/app:v1": "127.0.0.1:5000/team/app:v1",
		"localhost:5000/app:v1@sha256:" + strings.Repeat("a", 64): "localhost:5000/app@sha256:" + strings.Repeat("a", 64),
	}
	for in, want := range tests {
		if got, err := NormalizeRef(in); err != nil || got != want {
			t.Errorf("NormalizeRef(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := NormalizeRef("bad ref!!"); !errors.Is(err, v1.ErrInvalid) {
		t.Errorf("an invalid ref gave %v", err)
	}
}

func TestIsLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1:5000": true, "localhost:5000": true, "[::1]:5000": true, "localhost": true,
		"registry.example.com": false, "10.0.0.1:5000": false, "docker.io": false,
	} {
		if got := IsLoopbackHost(host); got != want {
			t.Errorf("IsLoopbackHost(%q) = %v", host, got)
		}
	}
}

func TestSocketPathStaysShort(t *testing.T) {
	if got := SocketPath("/var/lib/gantry/containerd"); got != "/var/lib/gantry/containerd/containerd.sock" {
		t.Errorf("short dir: %s", got)
	}
	long := "/" + strings.Repeat("d", 150)
	got := SocketPath(long)
	if len(got)+len(".ttrpc") >= 108 || !strings.HasPrefix(got, "/run/gantry/") {
		t.Errorf("long dir gave %s", got)
	}
	if SocketPath(long) != got || SocketPath(long+"x") == got {
		t.Error("socket path is not a stable function of the directory")
	}
}

func TestNewRejectsALogDriverTheShimCannotRun(t *testing.T) {
	for _, argv := range [][]string{{"gantry", "__log-driver"}, {"/bin/gantry", "a", "b"}} {
		_, err := New(t.Context(), Config{Address: "/nonexistent.sock", LogDriver: argv}, nil)
		if !errors.Is(err, v1.ErrInvalid) {
			t.Errorf("LogDriver %q: %v", argv, err)
		}
	}
}

func TestNewFailsClearlyWithoutContainerd(t *testing.T) {
	sock := t.TempDir() + "/none.sock"
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	_, err := New(ctx, Config{Address: sock}, nil)
	if !errors.Is(err, v1.ErrUnavailable) {
		t.Fatalf("New on a missing socket = %v, want ErrUnavailable", err)
	}
	if _, statErr := os.Stat(sock); statErr == nil {
		t.Fatal("New created the socket")
	}
}

func TestSeccompProfileArchitectures(t *testing.T) {
	native, known := nativeSeccompArch[goruntime.GOARCH]
	if !known {
		t.Skipf("no 32-bit sibling ABI known for %s", goruntime.GOARCH)
	}
	full := seccomp.DefaultProfile(&oci.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{}}}).Architectures
	with32 := slices.DeleteFunc(slices.Clone(full), func(a specs.Arch) bool { return a == specs.ArchX32 })
	for _, tc := range []struct {
		allow32Bit bool
		want       []specs.Arch
	}{
		{false, []specs.Arch{native}},
		{true, with32},
	} {
		s := &oci.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: DefaultCapabilities}}}
		if err := WithSeccompProfile(tc.allow32Bit)(context.Background(), nil, nil, s); err != nil {
			t.Fatal(err)
		}
		p := s.Linux.Seccomp
		if p == nil || p.DefaultAction != specs.ActErrno || len(p.Syscalls) == 0 {
			t.Fatalf("profile = %+v, want containerd's default allow-list", p)
		}
		if !slices.Equal(p.Architectures, tc.want) {
			t.Errorf("allow32Bit=%v: architectures %v, want %v", tc.allow32Bit, p.Architectures, tc.want)
		}
	}
	if goruntime.GOARCH == "amd64" && !slices.Equal(with32, []specs.Arch{specs.ArchX86_64, specs.ArchX86}) {
		t.Errorf("with 32-bit: %v, want x86_64 and x86 (no x32)", with32)
	}
}

func TestIsCompat32(t *testing.T) {
	if goruntime.GOARCH != "amd64" {
		t.Skip("table for amd64 nodes")
	}
	for arch, want := range map[string]bool{"386": true, "amd64": false, "": false, "arm": false, "arm64": false} {
		if got := isCompat32(arch); got != want {
			t.Errorf("isCompat32(%q) = %v, want %v", arch, got, want)
		}
	}
}

// runAsGroup alone replaces the primary group but keeps the image user's
// old primary group as a supplementary one (WithImageConfig puts it in
// AdditionalGids): an image with USER 1000:0 and runAsGroup: 1000 still
// has group 0. WithUIDGID and WithUserID both reset AdditionalGids.
func TestRunAsGroupAloneReplacesTheImageGroups(t *testing.T) {
	d := &Driver{cfg: Config{DefaultMemoryLimit: 1 << 30, DefaultPidsLimit: 100}}
	gid := int64(1000)
	s := &ContainerSpec{ID: "x", Image: "i", Security: Security{RunAsGroup: &gid}}
	ctx := namespaces.WithNamespace(context.Background(), "t")
	c := &containers.Container{ID: "x"}
	spec, err := oci.GenerateSpec(ctx, nil, c)
	if err != nil {
		t.Fatal(err)
	}
	// What WithImageConfig leaves for an image with USER 1000:0.
	spec.Process.User.UID, spec.Process.User.GID, spec.Process.User.AdditionalGids = 1000, 0, []uint32{0}
	for _, o := range d.specOpts(s, ImageInfo{}, nil)[2:] {
		if err := o(ctx, nil, c, spec); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range spec.Process.User.AdditionalGids {
		if g == 0 {
			t.Errorf("runAsGroup %d: user %+v keeps group 0", gid, spec.Process.User)
		}
	}
}

// Mounts marked Chown go to the user the process runs as once every
// option has had its say (here the image's USER 1000:1000, which
// WithImageConfig would have resolved), and the container records it.
func TestMountsMarkedChownGoToTheProcessUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	dir := t.TempDir()
	file, sub := filepath.Join(dir, "file"), filepath.Join(dir, "dir")
	other := filepath.Join(dir, "other")
	for _, p := range []string{file, other} {
		if err := os.WriteFile(p, []byte("x"), 0o400); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(sub, 0o500); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sub, "key"), []byte("x"), 0o400); err != nil {
		t.Fatal(err)
	}
	d := &Driver{cfg: Config{DefaultMemoryLimit: 1 << 30, DefaultPidsLimit: 100}}
	gid := int64(2000)
	s := &ContainerSpec{ID: "x", Image: "i", Security: Security{RunAsGroup: &gid}, Mounts: []Mount{
		{Source: file, Destination: "/run/secrets/a", ReadOnly: true, Chown: true},
		{Source: sub, Destination: "/run/secrets/b", ReadOnly: true, Chown: true},
		{Source: other, Destination: "/etc/other", ReadOnly: true},
	}}
	ctx := namespaces.WithNamespace(context.Background(), "t")
	c := &containers.Container{ID: "x"}
	spec, err := oci.GenerateSpec(ctx, nil, c)
	if err != nil {
		t.Fatal(err)
	}
	spec.Process.User.UID, spec.Process.User.GID = 1000, 1000 // the image's USER
	for _, o := range d.specOpts(s, ImageInfo{}, nil)[2:] {
		if err := o(ctx, nil, c, spec); err != nil {
			t.Fatal(err)
		}
	}
	owner := func(p string) string {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		return fmt.Sprintf("%d:%d", st.Uid, st.Gid)
	}
	for _, p := range []string{file, sub, filepath.Join(sub, "key")} {
		if got := owner(p); got != "1000:2000" {
			t.Errorf("%s is owned by %s, want 1000:2000 (the image's user, the App's group)", p, got)
		}
	}
	if got := owner(other); got != "0:0" {
		t.Errorf("a mount not marked Chown was given away: %s", got)
	}
	if got := c.Labels[labelUser]; got != "1000:2000" {
		t.Errorf("label %s = %q, want 1000:2000", labelUser, got)
	}
}
