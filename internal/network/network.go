package network

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// PortMapping publishes a port of an instance on the host.
type PortMapping struct {
	HostPort      int
	ContainerPort int
	// Protocol is "tcp" (default) or "udp".
	Protocol string
	// HostIP restricts the mapping to one host address; empty means all.
	HostIP string
}

// Attachment is an instance's place on the node network.
type Attachment struct {
	// NetNSPath is the bind-mounted network namespace to hand to the
	// container runtime.
	NetNSPath string
	IP        net.IP
	Gateway   net.IP
}

// Network attaches instances of one node to its bridge. Its methods are
// safe for concurrent use; calls for the same instance id are serialized.
type Network struct {
	cfg     Config
	log     *slog.Logger
	subnet  *net.IPNet
	cluster *net.IPNet
	gateway net.IP
	// list has the bridge and portmap plugins, bridgeOnly only the
	// bridge; both are the same network (see buildConfLists).
	list       *libcni.NetworkConfigList
	bridgeOnly *libcni.NetworkConfigList
	cni        *libcni.CNIConfig
	ipt        *iptables.IPTables

	// idLocks serialize Setup and Teardown of one id without a map that
	// would have to be garbage collected: ids hash onto a fixed set.
	idLocks [64]sync.Mutex

	// fresh holds the ids whose namespace PrepareNetNS made and CNI ADD
	// has not filled yet. Setup takes such a namespace as it is; any other
	// namespace without a CNI result is the left-over of a failed
	// attachment and is cleared first.
	freshMu sync.Mutex
	fresh   map[string]bool

	// policy is the isolation state; see isolation.go.
	policy policyState
}

// New prepares the node network: it checks the plugins, creates the data
// and netns directories, makes sure bridged traffic passes iptables, and
// installs the node's masquerade rule and isolation chain. It does not
// create the bridge; the bridge plugin does on the first Setup.
func New(cfg Config, log *slog.Logger) (*Network, error) {
	cfg, subnet, cluster, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &Network{
		cfg:     cfg,
		log:     log.With("bridge", cfg.BridgeName),
		subnet:  subnet,
		cluster: cluster,
		gateway: firstHost(subnet),
		fresh:   map[string]bool{},
	}
	for _, plugin := range []string{"bridge", "host-local", "portmap"} {
		if _, err := invoke.FindInPath(plugin, cfg.PluginDirs); err != nil {
			return nil, fmt.Errorf("network: CNI plugin %q not found in %s (install Debian's containernetworking-plugins): %w",
				plugin, strings.Join(cfg.PluginDirs, ":"), v1.ErrUnavailable)
		}
	}
	for _, dir := range []string{filepath.Join(cfg.DataDir, "ipam"), filepath.Join(cfg.DataDir, "cache"), cfg.NetNSDir} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("network: %w", err)
		}
	}
	if n.list, n.bridgeOnly, err = buildConfLists(cfg, subnet, n.gateway); err != nil {
		return nil, err
	}
	// An explicit Exec: libcni creates its default lazily, without a lock,
	// which races when instances are set up concurrently.
	pluginExec := &invoke.DefaultExec{
		RawExec:       &invoke.RawExec{Stderr: stderrLog{n.log}},
		PluginDecoder: version.PluginDecoder{},
	}
	n.cni = libcni.NewCNIConfigWithCacheDir(cfg.PluginDirs, filepath.Join(cfg.DataDir, "cache"), pluginExec)
	if n.ipt, err = iptables.New(); err != nil {
		return nil, fmt.Errorf("network: iptables: %w", err)
	}
	if err := n.ensureMasquerade(); err != nil {
		return nil, err
	}
	if err := n.initIsolation(); err != nil {
		return nil, err
	}
	return n, nil
}

// Gateway is the bridge's address: the instances' default gateway, and
// where the node's DNS server listens for them.
func (n *Network) Gateway() net.IP { return slices.Clone(n.gateway) }

// Subnet is the node's instance subnet.
func (n *Network) Subnet() *net.IPNet {
	return &net.IPNet{IP: slices.Clone(n.subnet.IP), Mask: slices.Clone(n.subnet.Mask)}
}

// NetNSPath is where the network namespace of instance id is (or would be)
// mounted.
func (n *Network) NetNSPath(id string) string { return filepath.Join(n.cfg.NetNSDir, id) }

func (n *Network) lockID(id string) func() {
	h := fnv.New32a()
	h.Write([]byte(id))
	mu := &n.idLocks[h.Sum32()%uint32(len(n.idLocks))]
	mu.Lock()
	return mu.Unlock
}

// stderrLog passes what plugins print on stderr to the log. Their errors
// proper come back as CNI error results; stderr has only diagnostics.
type stderrLog struct{ log *slog.Logger }

func (w stderrLog) Write(p []byte) (int, error) {
	w.log.Debug("CNI plugin stderr", "output", strings.TrimSpace(string(p)))
	return len(p), nil
}

// cniPortMapping is the portmap plugin's runtimeConfig entry.
type cniPortMapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

func portArgs(ports []PortMapping) ([]cniPortMapping, error) {
	out := make([]cniPortMapping, 0, len(ports))
	for _, p := range ports {
		proto := strings.ToLower(p.Protocol)
		if proto == "" {
			proto = "tcp"
		}
		if proto != "tcp" && proto != "udp" {
			return nil, fmt.Errorf("network: port %d: protocol %q: want tcp or udp: %w", p.ContainerPort, p.Protocol, v1.ErrInvalid)
		}
		if p.HostPort < 1 || p.HostPort > 65535 || p.ContainerPort < 1 || p.ContainerPort > 65535 {
			return nil, fmt.Errorf("network: port mapping %d->%d: ports must be 1-65535: %w", p.HostPort, p.ContainerPort, v1.ErrInvalid)
		}
		if p.HostIP != "" && net.ParseIP(p.HostIP) == nil {
			return nil, fmt.Errorf("network: port mapping %d->%d: host IP %q: %w", p.HostPort, p.ContainerPort, p.HostIP, v1.ErrInvalid)
		}
		out = append(out, cniPortMapping{HostPort: p.HostPort, ContainerPort: p.ContainerPort, Protocol: proto, HostIP: p.HostIP})
	}
	return out, nil
}

func (n *Network) runtimeConf(id, netnsPath string, ports []cniPortMapping) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{ContainerID: id, NetNS: netnsPath, IfName: ifName}
	if len(ports) > 0 {
		rt.CapabilityArgs = map[string]any{"portMappings": ports}
	}
	return rt
}

// Setup attaches instance id to the node network: it creates the
// instance's named network namespace and runs CNI ADD in it, publishing
// ports on the host.
//
// Setup is idempotent: if id is already attached, with its interface in
// place, it returns the existing attachment (the agent calls Setup again
// for every instance after it restarts). Asking for other ports than the
// attachment has is a v1.ErrConflict: ports of a running instance do not
// change in place; tear it down first. A half-done attachment left by a
// crash is torn down and made again.
//
// A new instance is isolated from every other instance until SetPolicy
// names it; the host always reaches it.
func (n *Network) Setup(ctx context.Context, id string, ports []PortMapping) (*Attachment, error) {
	if err := validateID(id); err != nil {
		return nil, err
	}
	want, err := portArgs(ports)
	if err != nil {
		return nil, err
	}
	defer n.lockID(id)()
	start := time.Now()
	path := n.NetNSPath(id)
	rt := n.runtimeConf(id, path, want)

	att, cachedRt, err := n.prepare(ctx, id, path)
	if err != nil {
		return nil, fmt.Errorf("network: setup %s: %w", id, err)
	}
	if att != nil {
		if !samePorts(cachedRt.CapabilityArgs, rt.CapabilityArgs) {
			return nil, fmt.Errorf("network: instance %s is attached with other port mappings; tear it down before changing them: %w", id, v1.ErrConflict)
		}
		return att, nil
	}
	list := n.bridgeOnly
	if len(want) > 0 {
		list = n.list
	}
	res, err := n.cni.AddNetworkList(ctx, list, rt)
	n.setFresh(id, false)
	if err != nil {
		// CNI leaves cleaning up a failed ADD to the runtime, with DEL.
		if terr := n.teardown(context.WithoutCancel(ctx), id); terr != nil {
			n.log.Warn("cleanup after failed CNI ADD", "instance", id, "err", terr)
		}
		return nil, fmt.Errorf("network: setup %s: CNI ADD: %w", id, err)
	}
	ip, gw, err := resultIP(res)
	if err != nil {
		return nil, fmt.Errorf("network: setup %s: %w", id, err)
	}
	n.log.Debug("instance attached", "instance", id, "ip", ip, "took", time.Since(start))
	return &Attachment{NetNSPath: path, IP: ip, Gateway: gw}, nil
}

// PrepareNetNS makes the network namespace of instance id ahead of Setup,
// so that the container can join it (runc's create step) while Setup
// attaches it: the two are most of a deploy's time. A complete attachment
// is left as it is, and a partial one left by a crash is cleared first,
// as Setup would. The NetNS it returns tells whether the namespace at the
// path is still the one the container joined.
func (n *Network) PrepareNetNS(ctx context.Context, id string) (NetNS, error) {
	if err := validateID(id); err != nil {
		return NetNS{}, err
	}
	defer n.lockID(id)()
	path := n.NetNSPath(id)
	if _, _, err := n.prepare(ctx, id, path); err != nil {
		return NetNS{}, fmt.Errorf("network: prepare %s: %w", id, err)
	}
	p, err := NetNSAt(path)
	if err != nil {
		return NetNS{}, fmt.Errorf("network: prepare %s: %w", id, err)
	}
	return p, nil
}

// NetNSAt returns what is mounted at path now, to tell later with
// Unchanged whether it was replaced.
func NetNSAt(path string) (NetNS, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return NetNS{}, fmt.Errorf("network namespace %s: %w", path, err)
	}
	return NetNS{Path: path, dev: st.Dev, ino: st.Ino}, nil
}

// NetNS is a network namespace PrepareNetNS made or found, by its path
// and its identity (a namespace's inode is unique while it lives).
type NetNS struct {
	Path     string
	dev, ino uint64
}

// Unchanged returns an error if the namespace at the path is no longer
// the one PrepareNetNS returned: something (a failed attachment's clean-
// up, a repair, a teardown) replaced or removed it, and a container that
// joined the old one must not be started.
func (p NetNS) Unchanged() error {
	now, err := NetNSAt(p.Path)
	if err != nil {
		return err
	}
	if now != p {
		return fmt.Errorf("network namespace %s was replaced while the container was created: %w", p.Path, v1.ErrConflict)
	}
	return nil
}

// prepare brings the namespace of id to one of two states, with the id
// lock held: a complete attachment, which it returns, or a namespace that
// CNI ADD can fill, marked fresh. Anything in between, left by a crash,
// is cleared first (ADD on top of a left-over eth0 or reservation would
// fail or leak).
func (n *Network) prepare(ctx context.Context, id, path string) (*Attachment, *libcni.RuntimeConf, error) {
	if n.isFresh(id) {
		return nil, nil, nil
	}
	att, cachedRt, err := n.existing(id, path)
	switch {
	case err == nil && att != nil:
		return att, cachedRt, nil
	case err != nil:
		n.log.Info("repairing partial network attachment", "instance", id, "reason", err)
		if err := n.teardown(ctx, id); err != nil {
			return nil, nil, fmt.Errorf("clear partial attachment: %w", err)
		}
	}
	if _, err := ensureNetNS(path); err != nil {
		return nil, nil, err
	}
	n.setFresh(id, true)
	return nil, nil, nil
}

func (n *Network) isFresh(id string) bool {
	n.freshMu.Lock()
	defer n.freshMu.Unlock()
	return n.fresh[id]
}

func (n *Network) setFresh(id string, fresh bool) {
	n.freshMu.Lock()
	defer n.freshMu.Unlock()
	if fresh {
		n.fresh[id] = true
	} else {
		delete(n.fresh, id)
	}
}

// existing returns the complete attachment of id, if there is one. It
// returns (nil, nil, nil) when there is no trace of id, and an error when
// some but not all of it is there.
func (n *Network) existing(id, path string) (*Attachment, *libcni.RuntimeConf, error) {
	probe := &libcni.RuntimeConf{ContainerID: id, NetNS: path, IfName: ifName}
	nsErr := ns.IsNSorErr(path)
	_, nsFileErr := os.Lstat(path)
	res, err := n.cni.GetNetworkListCachedResult(n.list, probe)
	if err != nil {
		return nil, nil, fmt.Errorf("read cached result: %w", err)
	}
	if res == nil {
		if nsFileErr == nil {
			return nil, nil, errors.New("netns without a CNI result")
		}
		// ADD that died after host-local reserved the address, and a
		// reboot that took the netns: ADD again would be refused as a
		// duplicate allocation.
		if ip := n.reservedIP(id); ip != nil {
			return nil, nil, fmt.Errorf("address %s reserved without a CNI result", ip)
		}
		return nil, nil, nil
	}
	if nsErr != nil {
		return nil, nil, fmt.Errorf("CNI result without a netns: %w", nsErr)
	}
	ip, gw, err := resultIP(res)
	if err != nil {
		return nil, nil, err
	}
	// The cache says what was set up; the netns says what is still there.
	// Checking the address costs a setns and a netlink dump, far less than
	// CNI CHECK's three plugin executions.
	if err := ns.WithNetNSPath(path, func(ns.NetNS) error { return hasAddr(ifName, ip) }); err != nil {
		return nil, nil, err
	}
	_, cachedRt, err := n.cni.GetNetworkListCachedConfig(n.list, probe)
	if err != nil || cachedRt == nil {
		return nil, nil, fmt.Errorf("read cached config: %v", err)
	}
	return &Attachment{NetNSPath: path, IP: ip, Gateway: gw}, cachedRt, nil
}

func hasAddr(name string, ip net.IP) error {
	link, err := netlinksafe.LinkByName(name)
	if err != nil {
		return fmt.Errorf("interface %s: %w", name, err)
	}
	addrs, err := netlinksafe.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("addresses of %s: %w", name, err)
	}
	for _, a := range addrs {
		if a.IP.Equal(ip) {
			return nil
		}
	}
	return fmt.Errorf("interface %s lost address %s", name, ip)
}

// samePorts compares the port mappings of a cached attachment with those
// asked for. The cached ones went through JSON, so both sides are compared
// in their JSON form.
func samePorts(cached, want map[string]any) bool {
	norm := func(m map[string]any) []byte {
		v := m["portMappings"]
		b, _ := json.Marshal(v)
		var generic any
		_ = json.Unmarshal(b, &generic)
		if s, ok := generic.([]any); ok && len(s) == 0 {
			generic = nil
		}
		out, _ := json.Marshal(generic)
		return out
	}
	return bytes.Equal(norm(cached), norm(want))
}

func resultIP(res types.Result) (ip, gw net.IP, err error) {
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return nil, nil, fmt.Errorf("convert CNI result: %w", err)
	}
	for _, c := range r.IPs {
		if v4 := c.Address.IP.To4(); v4 != nil {
			return v4, c.Gateway.To4(), nil
		}
	}
	return nil, nil, errors.New("CNI result has no IPv4 address")
}

// Teardown detaches instance id: CNI DEL releases its IP and port
// mappings, then its network namespace is removed. It tolerates any part
// being already gone, so it is safe after crashes and safe to repeat.
func (n *Network) Teardown(ctx context.Context, id string) error {
	if err := validateID(id); err != nil {
		return err
	}
	defer n.lockID(id)()
	return n.teardown(ctx, id)
}

// teardown is Teardown with the id lock held.
func (n *Network) teardown(ctx context.Context, id string) error {
	n.setFresh(id, false)
	path := n.NetNSPath(id)
	rt := &libcni.RuntimeConf{ContainerID: id, IfName: ifName}
	_, nsFileErr := os.Lstat(path)
	// Without a live netns the plugins skip everything inside it and only
	// release host-side state, which is what is left to release.
	if ns.IsNSorErr(path) == nil {
		rt.NetNS = path
	}
	list := n.list
	var ip net.IP
	if _, cachedRt, err := n.cni.GetNetworkListCachedConfig(n.list, rt); err == nil && cachedRt != nil {
		// DEL must see the port mappings ADD was given, or portmap has
		// nothing to remove; libcni keeps them in its cache but does not
		// reuse them on its own.
		rt = cachedRt
		if len(rt.CapabilityArgs) == 0 {
			list = n.bridgeOnly
		}
		if res, err := n.cni.GetNetworkListCachedResult(n.list, rt); err == nil && res != nil {
			ip, _, _ = resultIP(res)
		}
	} else {
		ip = n.reservedIP(id)
		if ip == nil && nsFileErr != nil {
			return nil // no trace of id: nothing to do, and nothing to spend time on
		}
		// No cached result: ADD may have died inside portmap, after it
		// made its chains. portmap removes those by instance id whatever
		// mappings DEL names, but does nothing when DEL names none.
		rt.CapabilityArgs = map[string]any{"portMappings": []cniPortMapping{{HostPort: 1, ContainerPort: 1, Protocol: "tcp"}}}
	}
	if ip != nil {
		// CNI DEL frees the address for the next instance, maybe of
		// another namespace: the rules granting it this one's namespace
		// go first, and while they cannot, the address stays taken (a
		// later teardown, or the agent's GC, tries again).
		if err := n.forgetMemberIP(ctx, ip); err != nil {
			return fmt.Errorf("network: teardown %s: %w", id, err)
		}
		// So are the kernel's tracked flows of the address: the rules
		// let an established flow through, and a UDP flow that a peer
		// keeps sending to would reach the address's next holder.
		if err := clearConntrack(ip); err != nil {
			n.log.Warn("forget tracked connections of a freed address", "instance", id, "ip", ip, "err", err)
		}
	}
	if err := n.cni.DelNetworkList(ctx, list, rt); err != nil {
		return fmt.Errorf("network: teardown %s: CNI DEL: %w", id, err)
	}
	if err := removeNetNS(path); err != nil {
		return fmt.Errorf("network: teardown %s: %w", id, err)
	}
	return nil
}

// clearConntrack deletes the connection tracking entries to and from ip
// (conntrack -D -s IP, -d IP and --reply-src/--reply-dst IP).
func clearConntrack(ip net.IP) error {
	var filters []netlink.CustomConntrackFilter
	for _, tp := range []netlink.ConntrackFilterType{netlink.ConntrackOrigSrcIP, netlink.ConntrackOrigDstIP, netlink.ConntrackReplyAnyIP} {
		f := &netlink.ConntrackFilter{}
		if err := f.AddIP(tp, ip); err != nil {
			return err
		}
		filters = append(filters, f)
	}
	family := netlink.InetFamily(unix.AF_INET)
	if ip.To4() == nil {
		family = netlink.InetFamily(unix.AF_INET6)
	}
	_, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, family, filters...)
	return err
}

// reservations maps instance ids to the addresses host-local reserved
// for them. host-local keeps one file per address, named by the address,
// holding "<id>\r\n<ifname>".
func (n *Network) reservations() (map[string]net.IP, error) {
	dir := filepath.Join(n.cfg.DataDir, "ipam", n.list.Name)
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("network: list IPAM reservations: %w", err)
	}
	out := map[string]net.IP{}
	for _, e := range entries {
		ip := net.ParseIP(e.Name())
		if ip == nil {
			continue // lock, last_reserved_ip.N
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // released meanwhile
		}
		id, _, _ := strings.Cut(string(b), "\n")
		if id = strings.TrimSpace(id); id != "" {
			out[id] = ip.To4()
		}
	}
	return out, nil
}

// reservedIP is the address reserved for id, or nil.
func (n *Network) reservedIP(id string) net.IP {
	res, err := n.reservations()
	if err != nil {
		return nil
	}
	return res[id]
}

// GC tears down every attachment whose id keep rejects: netns mounts,
// IPAM reservations, port mappings and cached results left by instances
// that are gone (after an agent crash, say). keep is called once per id
// found and must say yes to instances being set up at the same time, or
// GC tears them down under Setup's feet.
func (n *Network) GC(ctx context.Context, keep func(id string) bool) error {
	ids, err := n.knownIDs()
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range ids {
		if keep != nil && keep(id) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		n.log.Info("removing leftover network attachment", "instance", id)
		if err := n.Teardown(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// knownIDs lists every instance id with any trace on the node: a netns
// mount point, a cached CNI result or an IPAM reservation.
func (n *Network) knownIDs() ([]string, error) {
	seen := map[string]bool{}
	entries, err := os.ReadDir(n.cfg.NetNSDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("network: list netns: %w", err)
	}
	for _, e := range entries {
		seen[e.Name()] = true
	}
	atts, err := n.cni.GetCachedAttachments("")
	if err != nil {
		return nil, fmt.Errorf("network: list CNI cache: %w", err)
	}
	for _, a := range atts {
		if a.Network == n.list.Name {
			seen[a.ContainerID] = true
		}
	}
	reserved, err := n.reservations()
	if err != nil {
		return nil, err
	}
	for id := range reserved {
		seen[id] = true
	}
	ids := make([]string, 0, len(seen))
	for id := range seen {
		if validateID(id) == nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// ensureMasquerade installs the node's one masquerade rule: traffic from
// instances to anywhere outside the cluster leaves with the host's address.
func (n *Network) ensureMasquerade() error {
	if err := n.ipt.AppendUnique("nat", "POSTROUTING", n.masqueradeRule()...); err != nil {
		return fmt.Errorf("network: install masquerade rule: %w", err)
	}
	return nil
}

func (n *Network) masqueradeRule() []string {
	return []string{"-s", n.subnet.String(), "!", "-d", n.cluster.String(),
		"-m", "comment", "--comment", "gantry " + n.cfg.BridgeName + " masquerade", "-j", "MASQUERADE"}
}

// Cleanup removes everything the node network put on the machine: every
// attachment, Gantry's iptables rules and chains for this bridge, and the
// bridge itself (unless Config.KeepBridge). It is for tests and `gantry down`; the Network must not
// be used afterwards.
func (n *Network) Cleanup(ctx context.Context) error {
	var errs []error
	if err := n.GC(ctx, nil); err != nil {
		errs = append(errs, err)
	}
	if err := n.removeIsolation(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := n.ipt.DeleteIfExists("nat", "POSTROUTING", n.masqueradeRule()...); err != nil {
		errs = append(errs, fmt.Errorf("network: remove masquerade rule: %w", err))
	}
	if n.cfg.KeepBridge {
		n.log.Info("leaving the bridge, which was there before Gantry used it", "bridge", n.cfg.BridgeName)
	} else if link, err := netlinksafe.LinkByName(n.cfg.BridgeName); err == nil {
		if err := netlink.LinkDel(link); err != nil {
			errs = append(errs, fmt.Errorf("network: delete bridge %s: %w", n.cfg.BridgeName, err))
		}
	} else if _, ok := err.(netlink.LinkNotFoundError); !ok {
		errs = append(errs, fmt.Errorf("network: find bridge %s: %w", n.cfg.BridgeName, err))
	}
	return errors.Join(errs...)
}
