package agent

import (
	"context"
	"net"
	"time"

	"github.com/gantry-dev/gantry/internal/network"
	"github.com/gantry-dev/gantry/internal/runtime"
)

// Runtime runs containers; *runtime.Driver implements it.
type Runtime interface {
	EnsureImage(ctx context.Context, ref string) (runtime.ImageInfo, error)
	Create(ctx context.Context, spec *runtime.ContainerSpec) error
	CreateTask(ctx context.Context, id string) error
	Start(ctx context.Context, id string) (uint32, error)
	Wait(ctx context.Context, id string) (<-chan runtime.Exit, error)
	Stop(ctx context.Context, id string, grace time.Duration) error
	Remove(ctx context.Context, id string) error
	List(ctx context.Context) ([]runtime.Container, error)
	Inspect(ctx context.Context, id string) (runtime.Container, error)
	Exec(ctx context.Context, id string, opts runtime.ExecOptions) (int, error)
	Stats(ctx context.Context, id string) (runtime.Stats, error)
}

// Network attaches instances to the node network; *network.Network
// implements it.
type Network interface {
	Setup(ctx context.Context, id string, ports []network.PortMapping) (*network.Attachment, error)
	// NetNSPath is where Setup puts the network namespace of id, known
	// before Setup runs so that the container can be created meanwhile.
	NetNSPath(id string) string
	// PrepareNetNS makes that namespace before Setup, so that the
	// container's task can join it while Setup attaches it.
	PrepareNetNS(ctx context.Context, id string) (network.NetNS, error)
	Teardown(ctx context.Context, id string) error
	GC(ctx context.Context, keep func(id string) bool) error
	Gateway() net.IP
	WriteResolvConf(dir, namespace, domain string) (string, error)
	WriteHosts(dir, hostname string, ip net.IP) (string, error)
	SetPolicy(ctx context.Context, members []network.Member) error
	// CheckPolicy is SetPolicy that reads back what is in force first,
	// to repair rules someone removed.
	CheckPolicy(ctx context.Context, members []network.Member) error
}
