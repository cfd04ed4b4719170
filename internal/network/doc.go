// Package network gives every instance on a node its own network namespace
// and IP address, and enforces isolation between Gantry namespaces.
//
// It owns, on one node:
//
//   - the CNI network: a conflist generated in code (bridge as gateway with
//     hairpin mode, host-local IPAM on the node's subnet, portmap with SNAT
//     for instances that publish ports), run through libcni with Debian's
//     plugin binaries. Nothing is read from or written to /etc/cni or
//     /var/lib/cni: IPAM state and libcni's result cache live under
//     Config.DataDir, so two agents (or two tests) on one machine do not
//     see each other's state;
//   - one persistent named network namespace per instance, bind-mounted
//     under Config.NetNSDir, its loopback up. It outlives the instance's
//     container, so an instance restarted in place keeps its IP. The agent
//     has it made first (PrepareNetNS), so that the container's task can
//     join it while Setup attaches it; NetNS.Unchanged then tells whether
//     the namespace at the path is still the one the task joined;
//   - masquerading of traffic that leaves the cluster CIDR (one rule per
//     node, not the bridge plugin's per-instance chains: see conflist.go);
//   - the packet-filter chains that keep instances of one Gantry namespace
//     from opening connections to another's (GANTRY-ISO-<bridge> and its
//     sub-chains, see isolation.go);
//   - the resolv.conf and hosts files an instance sees.
//
// It must not: decide which instances exist (the agent tells it through
// PrepareNetNS, Setup, Teardown, GC and SetPolicy), talk to the store or containerd, or
// touch iptables rules and chains it did not create — the portmap plugin's
// shared CNI-HOSTPORT-* chains are left alone even by Cleanup, since other
// CNI users on the machine share them.
//
// Not done yet: cross-node traffic (VXLAN between node subnets) is out of
// scope for now, so isolation only covers instances on the same bridge;
// IPv6 is not configured: ensureNetNS turns it off for the interfaces of
// a new namespace (lo keeps ::1), as the isolation rules filter IPv4 only.
package network
