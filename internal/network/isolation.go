package network

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// Namespace isolation.
//
// Traffic between two instances on the bridge is bridged, not routed; it
// reaches iptables' FORWARD chain only because br_netfilter hands bridged
// IPv4 frames to iptables (net.bridge.bridge-nf-call-iptables=1), with the
// bridge as both in and out interface. One rule in FORWARD sends exactly
// that traffic (-i BR -o BR) to Gantry's chain for the bridge:
//
//	GANTRY-ISO-<bridge>                 (main)
//	  ESTABLISHED,RELATED  -> ACCEPT    replies and ICMP errors of allowed flows
//	  ctstate DNAT         -> ACCEPT    published host ports are public entry points
//	  -d <member IP>       -> P chain of the member's policy group
//	  anything else        -> REJECT    unknown destinations are isolated
//	GANTRY-<tag>-P<hash>                (one per namespace + AllowFrom set)
//	  -> S chain of each namespace allowed in (its own first)
//	  ACCEPT                            (allowFrom "*": from every namespace)
//	  anything else        -> REJECT
//	GANTRY-<tag>-S<hash>                (one per source namespace)
//	  -s <member IP>       -> ACCEPT
//
// The rule count grows with members plus groups' allowed namespaces, not
// with their product. Every SetPolicy rewrites all of these chains in one
// iptables-restore transaction, so no packet ever sees half a policy.
//
// What is not filtered, on purpose: the host's own traffic to instances
// (OUTPUT, never FORWARD: the ingress and probes must reach every
// instance) and instances' traffic to the host (INPUT: DNS on the
// gateway). Rejections use icmp-admin-prohibited, so a blocked connect
// fails at once with "no route to host" instead of hanging until timeout.
// Tightening a policy does not cut connections already established.

// Member is one instance as the isolation policy sees it.
type Member struct {
	IP net.IP
	// Namespace is the instance's Gantry namespace. Instances of one
	// namespace may always connect to each other.
	Namespace string
	// AllowFrom names other namespaces whose instances may connect to this
	// one (the App's network.allowFrom); AllowAll admits every namespace.
	AllowFrom []string
}

// AllowAll in Member.AllowFrom admits instances of every namespace.
const AllowAll = "*"

type policyState struct {
	mu sync.Mutex
	// applied is whether SetPolicy ran since New; until it does, members
	// is unknown and Teardown leaves the chains alone.
	applied bool
	members []Member
	// chains are the policy chains the last apply left, and checked is
	// when the filter table was last read. Within PolicyRecheck of that
	// read an apply trusts them instead of listing the table again: the
	// listing is an iptables run on the path from deploy to running.
	chains  []string
	checked time.Time
}

// PolicyRecheck is how long an apply trusts what the previous one left
// in the filter table. Past it, an apply reads the table again and puts
// back a hook that someone removed (a firewall reload, say); the agent
// calls CheckPolicy every PolicyRecheck so that this happens even when
// nothing changes.
const PolicyRecheck = 30 * time.Second

const hookComment = "gantry namespace isolation"

// rejectWith is what a blocked connection attempt gets back.
const rejectWith = "icmp-admin-prohibited"

var labelPattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

func (n *Network) mainChain() string { return "GANTRY-ISO-" + n.cfg.BridgeName }

// chainPrefix starts the name of every sub-chain of this bridge. Chain
// names are limited to 28 characters, too few for a bridge name and a
// namespace name, so both are hashed.
func (n *Network) chainPrefix() string { return "GANTRY-" + shortHash(n.cfg.BridgeName, 6) + "-" }

func shortHash(s string, length int) string {
	sum := sha256.Sum256([]byte(s))
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:])[:length]
}

// initIsolation makes bridged traffic visible to iptables and hooks the
// main chain into FORWARD. A main chain that already exists is kept as it
// is: after an agent restart the last policy stays in force until the agent
// sets it again. A new one starts with no members, isolating everything.
func (n *Network) initIsolation() error {
	if err := ensureBridgeNetfilter(); err != nil {
		// Networking still works; SetPolicy will fail until this is
		// fixed, and the agent starts no instance on the bridge.
		n.log.Error("namespace isolation unavailable: bridged traffic bypasses iptables", "err", err)
	}
	existing, hooks, err := n.readFilter(context.Background())
	if err != nil {
		return err
	}
	if slices.Contains(existing, n.mainChain()) {
		if hooks == 0 {
			return n.restore(context.Background(), "*filter\n"+n.hookLine()+"COMMIT\n")
		}
		return nil
	}
	n.policy.mu.Lock()
	defer n.policy.mu.Unlock()
	return n.applyPolicy(context.Background(), nil)
}

const brNetfilterSysctl = "/proc/sys/net/bridge/bridge-nf-call-iptables"

// ensureBridgeNetfilter makes the kernel pass bridged IPv4 traffic through
// iptables: it loads br_netfilter if it is a module that is not loaded yet
// (it is built in on some kernels, this machine's among them) and turns
// the sysctl on.
func ensureBridgeNetfilter() error {
	if _, err := os.Stat(brNetfilterSysctl); errors.Is(err, os.ErrNotExist) {
		if out, err := exec.Command("modprobe", "br_netfilter").CombinedOutput(); err != nil {
			return fmt.Errorf("load br_netfilter (modprobe: %v: %s): %w", err, bytes.TrimSpace(out), v1.ErrUnsupported)
		}
	}
	b, err := os.ReadFile(brNetfilterSysctl)
	if err != nil {
		return fmt.Errorf("read %s: %v: %w", brNetfilterSysctl, err, v1.ErrUnsupported)
	}
	if strings.TrimSpace(string(b)) == "1" {
		return nil
	}
	if err := os.WriteFile(brNetfilterSysctl, []byte("1"), 0o644); err != nil {
		return fmt.Errorf("enable %s: %v: %w", brNetfilterSysctl, err, v1.ErrUnsupported)
	}
	return nil
}

// SetPolicy replaces the isolation policy with one for members, which must
// list every instance on the node the agent knows of. An instance not
// listed can neither connect to members nor be connected to by them (the
// host still can). The agent calls it whenever an instance gets an IP,
// goes away, or its App's allowFrom changes. It fails with an error
// wrapping v1.ErrUnsupported when the kernel cannot pass bridged traffic
// through iptables (no br_netfilter). A member it cannot take (see
// validateMembers) is left out, and so isolated, while the others' rules
// are applied; the error, wrapping v1.ErrInvalid, then names it.
func (n *Network) SetPolicy(ctx context.Context, members []Member) error {
	// Checked every time (a file read): anyone may turn the sysctl off,
	// and the chains would then silently stop seeing bridged traffic.
	if err := ensureBridgeNetfilter(); err != nil {
		return fmt.Errorf("network: namespace isolation: %w", err)
	}
	clean, invalid := validateMembers(members)
	n.policy.mu.Lock()
	defer n.policy.mu.Unlock()
	if err := n.applyPolicy(ctx, clean); err != nil {
		return errors.Join(err, invalid)
	}
	n.policy.applied = true
	n.policy.members = clean
	return invalid
}

// CheckPolicy is SetPolicy that reads the filter table first, whatever
// the last apply left: the periodic reapply, which puts back rules that
// someone removed since (an apply that trusts the table re-creates
// flushed chains but not the FORWARD hook into them).
func (n *Network) CheckPolicy(ctx context.Context, members []Member) error {
	n.policy.mu.Lock()
	n.policy.checked = time.Time{}
	n.policy.mu.Unlock()
	return n.SetPolicy(ctx, members)
}

// forgetMemberIP drops the member holding ip from the policy in force.
func (n *Network) forgetMemberIP(ctx context.Context, ip net.IP) error {
	n.policy.mu.Lock()
	defer n.policy.mu.Unlock()
	if !n.policy.applied {
		return nil
	}
	kept := slices.DeleteFunc(slices.Clone(n.policy.members), func(m Member) bool { return m.IP.Equal(ip) })
	if len(kept) == len(n.policy.members) {
		return nil
	}
	if err := n.applyPolicy(ctx, kept); err != nil {
		return err
	}
	n.policy.members = kept
	return nil
}

func (n *Network) applyPolicy(ctx context.Context, members []Member) error {
	trusted := n.policy.applied && time.Since(n.policy.checked) < PolicyRecheck
	if trusted {
		rules, kept := renderPolicy(n.mainChain(), n.chainPrefix(), members, n.policy.chains)
		if err := n.restore(ctx, rules); err == nil {
			n.policy.chains = kept
			return nil
		} else if ctx.Err() != nil {
			return err
		}
		// The table is not what the last apply left: read it.
	}
	checked := time.Now()
	existing, hooks, err := n.readFilter(ctx)
	if err != nil {
		return err
	}
	rules, kept := renderPolicy(n.mainChain(), n.chainPrefix(), members, existing)
	if hooks == 0 {
		// First policy, or someone flushed FORWARD (a firewall reload):
		// hook the main chain in within the same transaction.
		rules = strings.TrimSuffix(rules, "COMMIT\n") + n.hookLine() + "COMMIT\n"
	}
	if err := n.restore(ctx, rules); err != nil {
		return err
	}
	n.policy.chains, n.policy.checked = kept, checked
	return nil
}

// hookLine is forwardRule in iptables-restore syntax, first in FORWARD.
func (n *Network) hookLine() string {
	return fmt.Sprintf("-I FORWARD 1 -i %s -o %s -m comment --comment %q -j %s\n",
		n.cfg.BridgeName, n.cfg.BridgeName, hookComment, n.mainChain())
}

// readFilter lists this bridge's policy chains and counts how many times
// FORWARD jumps to the main chain, from one listing of the filter table
// (each iptables run costs milliseconds, and SetPolicy sits on the path
// from deploy to running).
func (n *Network) readFilter(ctx context.Context) (chains []string, hooks int, err error) {
	out, err := exec.CommandContext(ctx, "iptables", "--wait", "-t", "filter", "-S").Output()
	if err != nil {
		return nil, 0, fmt.Errorf("network: list iptables filter table: %w", err)
	}
	jump := "-j " + n.mainChain()
	for line := range strings.Lines(string(out)) {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "-N "):
			c := strings.TrimPrefix(line, "-N ")
			if c == n.mainChain() || strings.HasPrefix(c, n.chainPrefix()) {
				chains = append(chains, c)
			}
		case strings.HasPrefix(line, "-A FORWARD ") && strings.HasSuffix(line, jump) &&
			strings.Contains(line, "-i "+n.cfg.BridgeName+" -o "+n.cfg.BridgeName+" "):
			hooks++
		}
	}
	return chains, hooks, nil
}

// ownChains lists the filter chains of this bridge's policy.
func (n *Network) ownChains() ([]string, error) {
	chains, _, err := n.readFilter(context.Background())
	return chains, err
}

// removeIsolation unhooks and deletes every chain of this bridge's policy,
// in one transaction.
func (n *Network) removeIsolation(ctx context.Context) error {
	n.policy.mu.Lock()
	defer n.policy.mu.Unlock()
	existing, hooks, err := n.readFilter(ctx)
	if err != nil {
		return err
	}
	if len(existing) == 0 && hooks == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("*filter\n")
	for _, c := range existing {
		fmt.Fprintf(&b, ":%s - [0:0]\n", c)
	}
	for range hooks {
		b.WriteString(strings.Replace(n.hookLine(), "-I FORWARD 1 ", "-D FORWARD ", 1))
	}
	for _, c := range existing {
		fmt.Fprintf(&b, "-X %s\n", c)
	}
	b.WriteString("COMMIT\n")
	n.policy.applied = false
	n.policy.members = nil
	return n.restore(ctx, b.String())
}

// restore applies rules with iptables-restore --noflush: the chains it
// declares are flushed and refilled, all others are left alone, and the
// whole input is one transaction.
func (n *Network) restore(ctx context.Context, rules string) error {
	cmd := exec.CommandContext(ctx, "iptables-restore", "--noflush", "--wait")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("network: iptables-restore: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// validateMembers checks members and returns a copy with sorted,
// de-duplicated AllowFrom lists and 4-byte IPs. Namespace names end up in
// iptables-restore input, so only DNS labels are accepted, and AllowAll
// in AllowFrom. A member that fails a check is left out of the copy,
// which isolates it (its address meets the main chain's reject), and the
// error, wrapping v1.ErrInvalid, says why; one bad member does not keep
// the rest of the node's policy from being applied. Two members with one
// address are both left out: which of them the address belongs to is
// not known.
func validateMembers(members []Member) ([]Member, error) {
	out := make([]Member, 0, len(members))
	var errs []error
	drop := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("network: "+format+": %w", append(args, v1.ErrInvalid)...))
	}
	count := map[string]int{}
	for _, m := range members {
		if ip := m.IP.To4(); ip != nil {
			count[ip.String()]++
		}
	}
	dups := map[string]bool{}
	for _, m := range members {
		ip := m.IP.To4()
		switch {
		case ip == nil:
			drop("policy member %v: not an IPv4 address", m.IP)
			continue
		case !labelPattern.MatchString(m.Namespace):
			drop("policy member %s: namespace %q is not a DNS label", ip, m.Namespace)
			continue
		case count[ip.String()] > 1:
			if !dups[ip.String()] {
				dups[ip.String()] = true
				drop("policy lists %s %d times; none of them is admitted", ip, count[ip.String()])
			}
			continue
		}
		allow, bad := []string{}, ""
		for _, a := range m.AllowFrom {
			switch {
			case a == AllowAll:
				allow = []string{AllowAll}
			case !labelPattern.MatchString(a):
				bad = a
			case a != m.Namespace && !slices.Contains(allow, AllowAll):
				allow = append(allow, a)
			}
		}
		if bad != "" {
			drop("policy member %s: allowFrom %q is not a DNS label or %q", ip, bad, AllowAll)
			continue
		}
		slices.Sort(allow)
		out = append(out, Member{IP: ip, Namespace: m.Namespace, AllowFrom: slices.Compact(allow)})
	}
	slices.SortFunc(out, func(a, b Member) int { return bytes.Compare(a.IP, b.IP) })
	return out, errors.Join(errs...)
}

// renderPolicy writes the iptables-restore input that makes the chains of
// one bridge (main, and sub-chains named prefix+...) enforce members, and
// deletes those of existing that are no longer needed. members must have
// passed validateMembers. It is a pure function so the rule layout can be
// tested without iptables.
func renderPolicy(main, prefix string, members []Member, existing []string) (rules string, chains []string) {
	groupChain := func(key string) string { return prefix + "P" + shortHash(key, 12) }
	sourceChain := func(ns string) string { return prefix + "S" + shortHash(ns, 12) }

	sources := map[string][]net.IP{} // namespace -> member IPs
	for _, m := range members {
		sources[m.Namespace] = append(sources[m.Namespace], m.IP)
	}
	type group struct {
		chain   string
		allowed []string // own namespace first
	}
	groups := map[string]*group{}
	var dispatch strings.Builder
	for _, m := range members {
		allowed := append([]string{m.Namespace}, m.AllowFrom...)
		key := strings.Join(allowed, ",")
		g, ok := groups[key]
		if !ok {
			g = &group{chain: groupChain(key), allowed: allowed}
			groups[key] = g
		}
		fmt.Fprintf(&dispatch, "-A %s -d %s/32 -m comment --comment \"ns %s\" -j %s\n", main, m.IP, m.Namespace, g.chain)
	}

	var b strings.Builder
	b.WriteString("*filter\n")
	keep := map[string]bool{main: true}
	fmt.Fprintf(&b, ":%s - [0:0]\n", main)
	groupNames := make([]string, 0, len(groups))
	for key := range groups {
		groupNames = append(groupNames, key)
	}
	slices.Sort(groupNames)
	usedSources := map[string]bool{}
	for _, key := range groupNames {
		g := groups[key]
		keep[g.chain] = true
		fmt.Fprintf(&b, ":%s - [0:0]\n", g.chain)
		for _, ns := range g.allowed {
			if len(sources[ns]) > 0 {
				usedSources[ns] = true
			}
		}
	}
	sourceNames := make([]string, 0, len(usedSources))
	for ns := range usedSources {
		sourceNames = append(sourceNames, ns)
	}
	slices.Sort(sourceNames)
	for _, ns := range sourceNames {
		keep[sourceChain(ns)] = true
		fmt.Fprintf(&b, ":%s - [0:0]\n", sourceChain(ns))
	}
	// Chains of a previous policy: declaring them flushes them, which
	// iptables needs before it can delete them in the same transaction.
	var stale []string
	for _, c := range existing {
		if !keep[c] {
			stale = append(stale, c)
			fmt.Fprintf(&b, ":%s - [0:0]\n", c)
		}
	}

	fmt.Fprintf(&b, "-A %s -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n", main)
	fmt.Fprintf(&b, "-A %s -m conntrack --ctstate DNAT -j ACCEPT\n", main)
	b.WriteString(dispatch.String())
	fmt.Fprintf(&b, "-A %s -j REJECT --reject-with %s\n", main, rejectWith)
	for _, key := range groupNames {
		g := groups[key]
		for _, ns := range g.allowed {
			if ns == AllowAll {
				fmt.Fprintf(&b, "-A %s -m comment --comment \"from every ns\" -j ACCEPT\n", g.chain)
				break
			}
			if usedSources[ns] && len(sources[ns]) > 0 {
				fmt.Fprintf(&b, "-A %s -m comment --comment \"from ns %s\" -j %s\n", g.chain, ns, sourceChain(ns))
			}
		}
		fmt.Fprintf(&b, "-A %s -j REJECT --reject-with %s\n", g.chain, rejectWith)
	}
	for _, ns := range sourceNames {
		for _, ip := range sources[ns] {
			fmt.Fprintf(&b, "-A %s -s %s/32 -j ACCEPT\n", sourceChain(ns), ip)
		}
	}
	for _, c := range stale {
		fmt.Fprintf(&b, "-X %s\n", c)
	}
	b.WriteString("COMMIT\n")
	for c := range keep {
		chains = append(chains, c)
	}
	slices.Sort(chains)
	return b.String(), chains
}
