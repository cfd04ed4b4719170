package network

import (
	"fmt"
	"net"
	"path/filepath"
	"regexp"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// Config is the network of one node.
type Config struct {
	// BridgeName is the Linux bridge instances attach to. It also names
	// the CNI network and Gantry's iptables chains, so two Networks on one
	// machine must use different bridges. Default "gantry0".
	BridgeName string
	// Subnet is this node's share of ClusterCIDR, handed out by the
	// server, e.g. "10.77.1.0/24". Its first address is the gateway.
	Subnet string
	// ClusterCIDR holds every node's subnet, e.g. "10.77.0.0/16". Traffic
	// to it is not masqueraded, so an instance sees its peers' real
	// addresses. Default: Subnet.
	ClusterCIDR string
	// PluginDirs are searched in order for CNI plugin binaries. Default
	// /usr/lib/cni (Debian's containernetworking-plugins), then /opt/cni/bin.
	PluginDirs []string
	// DataDir holds host-local's IP reservations (DataDir/ipam) and
	// libcni's result cache (DataDir/cache). Required.
	DataDir string
	// NetNSDir is where instances' network namespaces are bind-mounted.
	// Default /run/gantry/netns.
	NetNSDir string
	// MTU of the bridge and the instances' interfaces. Default: the MTU of
	// the link carrying the host's default route, else 1500.
	MTU int
	// KeepBridge says the bridge was there before the node first used
	// it (a bridge of the machine's own, named with --bridge): Cleanup
	// leaves it, and removes only what Gantry put on it.
	KeepBridge bool `json:",omitempty"`
}

// Defaults used when a Config field is empty.
const (
	DefaultBridgeName = "gantry0"
	DefaultNetNSDir   = "/run/gantry/netns"
)

// DefaultPluginDirs are searched for CNI plugins when Config.PluginDirs is
// empty.
var DefaultPluginDirs = []string{"/usr/lib/cni", "/opt/cni/bin"}

// The CNI spec limits container IDs and network names to these characters;
// we apply the same rule to instance ids because they also name netns files.
var (
	idPattern     = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`)
	bridgePattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.\-]{0,14}$`)
)

// maxIDLen keeps a netns file name and the cache file name
// (<network>-<id>-eth0) well under NAME_MAX.
const maxIDLen = 200

// withDefaults returns cfg with empty fields filled in, and the parsed
// subnet and cluster CIDR.
func (cfg Config) withDefaults() (Config, *net.IPNet, *net.IPNet, error) {
	if cfg.BridgeName == "" {
		cfg.BridgeName = DefaultBridgeName
	}
	if !bridgePattern.MatchString(cfg.BridgeName) {
		return cfg, nil, nil, fmt.Errorf("network: bridge name %q: want 1-15 letters, digits, '_', '.' or '-': %w", cfg.BridgeName, v1.ErrInvalid)
	}
	if cfg.Subnet == "" {
		return cfg, nil, nil, fmt.Errorf("network: subnet is required: %w", v1.ErrInvalid)
	}
	_, subnet, err := net.ParseCIDR(cfg.Subnet)
	if err != nil || subnet.IP.To4() == nil {
		return cfg, nil, nil, fmt.Errorf("network: subnet %q is not an IPv4 CIDR: %w", cfg.Subnet, v1.ErrInvalid)
	}
	if ones, bits := subnet.Mask.Size(); bits-ones < 2 {
		return cfg, nil, nil, fmt.Errorf("network: subnet %q leaves no room for a gateway and instances: %w", cfg.Subnet, v1.ErrInvalid)
	}
	if cfg.ClusterCIDR == "" {
		cfg.ClusterCIDR = subnet.String()
	}
	_, cluster, err := net.ParseCIDR(cfg.ClusterCIDR)
	if err != nil || cluster.IP.To4() == nil {
		return cfg, nil, nil, fmt.Errorf("network: cluster CIDR %q is not an IPv4 CIDR: %w", cfg.ClusterCIDR, v1.ErrInvalid)
	}
	if co, _ := cluster.Mask.Size(); !cluster.Contains(subnet.IP) || co > onesOf(subnet) {
		return cfg, nil, nil, fmt.Errorf("network: subnet %s is not inside cluster CIDR %s: %w", subnet, cluster, v1.ErrInvalid)
	}
	if len(cfg.PluginDirs) == 0 {
		cfg.PluginDirs = DefaultPluginDirs
	}
	if cfg.DataDir == "" {
		return cfg, nil, nil, fmt.Errorf("network: data dir is required: %w", v1.ErrInvalid)
	}
	if cfg.DataDir, err = filepath.Abs(cfg.DataDir); err != nil {
		return cfg, nil, nil, fmt.Errorf("network: data dir: %w", err)
	}
	if cfg.NetNSDir == "" {
		cfg.NetNSDir = DefaultNetNSDir
	}
	if cfg.NetNSDir, err = filepath.Abs(cfg.NetNSDir); err != nil {
		return cfg, nil, nil, fmt.Errorf("network: netns dir: %w", err)
	}
	if cfg.MTU == 0 {
		cfg.MTU = defaultRouteMTU()
	}
	if cfg.MTU < 576 || cfg.MTU > 65535 {
		return cfg, nil, nil, fmt.Errorf("network: MTU %d out of range: %w", cfg.MTU, v1.ErrInvalid)
	}
	return cfg, subnet, cluster, nil
}

func onesOf(n *net.IPNet) int {
	ones, _ := n.Mask.Size()
	return ones
}

// defaultRouteMTU is the MTU of the link the host's default route leaves
// through. Instances' traffic to the outside is masqueraded out of that
// link, so a larger MTU inside would only fragment or black-hole there
// (this machine's eth0 has 1400, not 1500).
func defaultRouteMTU() int {
	routes, err := netlinksafe.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: 254}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return 1500
	}
	for _, r := range routes {
		if r.Dst != nil && onesOf(r.Dst) != 0 {
			continue
		}
		link, err := netlink.LinkByIndex(r.LinkIndex)
		if err != nil {
			continue
		}
		if mtu := link.Attrs().MTU; mtu > 0 {
			return mtu
		}
	}
	return 1500
}

// validateID checks an instance id before it is used in file names and
// handed to CNI plugins.
func validateID(id string) error {
	if len(id) > maxIDLen || !idPattern.MatchString(id) {
		return fmt.Errorf("network: instance id %q: want up to %d letters, digits, '_', '.' or '-', starting with a letter or digit: %w", id, maxIDLen, v1.ErrInvalid)
	}
	return nil
}
