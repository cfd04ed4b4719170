package network

import (
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"

	"github.com/containernetworking/cni/libcni"
)

// cniVersion is the highest version Debian's plugins (1.1.1) speak. It is
// below 1.1.0, so the plugins have no GC verb and Network.GC does the
// garbage collection itself, with DEL.
const cniVersion = "1.0.0"

// ifName is the instance's interface inside its netns.
const ifName = "eth0"

// The conflist is built from these types rather than from a template so
// that a field name typo is a compile error, not a silently ignored key.
type (
	confList struct {
		CNIVersion string `json:"cniVersion"`
		Name       string `json:"name"`
		Plugins    []any  `json:"plugins"`
	}
	bridgeConf struct {
		Type        string   `json:"type"`
		Bridge      string   `json:"bridge"`
		IsGateway   bool     `json:"isGateway"`
		IPMasq      bool     `json:"ipMasq"`
		HairpinMode bool     `json:"hairpinMode"`
		MTU         int      `json:"mtu"`
		IPAM        ipamConf `json:"ipam"`
	}
	ipamConf struct {
		Type    string        `json:"type"`
		DataDir string        `json:"dataDir"`
		Ranges  [][]ipamRange `json:"ranges"`
		Routes  []ipamRoute   `json:"routes"`
	}
	ipamRange struct {
		Subnet  string `json:"subnet"`
		Gateway string `json:"gateway"`
	}
	ipamRoute struct {
		Dst string `json:"dst"`
	}
	portmapConf struct {
		Type         string          `json:"type"`
		Capabilities map[string]bool `json:"capabilities"`
		SNAT         bool            `json:"snat"`
	}
)

// buildConfLists generates the node's CNI network, in two variants of one
// network (same name, same IPAM state): bridge then portmap, for instances
// that publish ports, and the bridge alone for those that do not. Each
// plugin in a list is a process execution on every ADD and DEL, and
// portmap without mappings does nothing but cost ~4 ms each way.
//
// The bridge plugin's own ipMasq is off on purpose: it adds a nat chain and
// rules per instance (iptables executions on every Setup, and a chain that
// leaks when DEL runs without the netns), and it masquerades everything
// outside the node's subnet — including other nodes' subnets, which would
// hide the source address that namespace isolation filters on once
// traffic crosses nodes. One rule per node (ensureMasquerade) that
// masquerades only traffic leaving ClusterCIDR does the job instead.
//
// There is no loopback plugin either: ensureNetNS brings lo up when it
// creates the namespace, in-process, which saves ~5 ms per Setup and per
// Teardown.
func buildConfLists(cfg Config, subnet *net.IPNet, gateway net.IP) (withPorts, bridgeOnly *libcni.NetworkConfigList, err error) {
	bridge := bridgeConf{
		Type:        "bridge",
		Bridge:      cfg.BridgeName,
		IsGateway:   true,
		IPMasq:      false,
		HairpinMode: true,
		MTU:         cfg.MTU,
		IPAM: ipamConf{
			Type:    "host-local",
			DataDir: filepath.Join(cfg.DataDir, "ipam"),
			Ranges:  [][]ipamRange{{{Subnet: subnet.String(), Gateway: gateway.String()}}},
			Routes:  []ipamRoute{{Dst: "0.0.0.0/0"}},
		},
	}
	portmap := portmapConf{
		Type:         "portmap",
		Capabilities: map[string]bool{"portMappings": true},
		SNAT:         true,
	}
	if withPorts, err = encodeConfList(cfg.BridgeName, bridge, portmap); err != nil {
		return nil, nil, err
	}
	if bridgeOnly, err = encodeConfList(cfg.BridgeName, bridge); err != nil {
		return nil, nil, err
	}
	return withPorts, bridgeOnly, nil
}

func encodeConfList(name string, plugins ...any) (*libcni.NetworkConfigList, error) {
	b, err := json.Marshal(confList{CNIVersion: cniVersion, Name: name, Plugins: plugins})
	if err != nil {
		return nil, fmt.Errorf("network: encode conflist: %w", err)
	}
	l, err := libcni.NetworkConfFromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("network: parse generated conflist: %w", err)
	}
	return l, nil
}

// firstHost is the first usable address of n: the bridge's address and the
// instances' default gateway.
func firstHost(n *net.IPNet) net.IP {
	ip := make(net.IP, 4)
	copy(ip, n.IP.To4())
	ip[3]++
	return ip
}
