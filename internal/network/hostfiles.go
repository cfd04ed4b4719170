package network

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// File names WriteResolvConf and WriteHosts use inside an instance's dir.
const (
	ResolvConfFile = "resolv.conf"
	HostsFile      = "hosts"
)

// WriteResolvConf writes dir/resolv.conf for an instance of namespace:
// the node's DNS server on the gateway, and search domains so that "db"
// finds the db service of the instance's own namespace, and "db.other"
// the one of namespace other. domain is the cluster DNS domain. It
// returns the file's path, for the agent to bind-mount on /etc/resolv.conf.
//
// ndots:5 makes every name with fewer than five dots try the search list
// first, which is what lets "db.other" resolve inside the cluster.
func (n *Network) WriteResolvConf(dir, namespace, domain string) (string, error) {
	if !labelPattern.MatchString(namespace) {
		return "", fmt.Errorf("network: resolv.conf: namespace %q is not a DNS label: %w", namespace, v1.ErrInvalid)
	}
	domain = strings.TrimSuffix(domain, ".")
	if domain == "" || strings.ContainsAny(domain, " \t\r\n") {
		return "", fmt.Errorf("network: resolv.conf: domain %q: %w", domain, v1.ErrInvalid)
	}
	content := fmt.Sprintf("nameserver %s\nsearch %s.svc.%s svc.%s %s\noptions ndots:5\n",
		n.gateway, namespace, domain, domain, domain)
	return writeInstanceFile(dir, ResolvConfFile, content)
}

// WriteHosts writes dir/hosts: localhost and the instance's own hostname
// on its IP. It returns the file's path, for /etc/hosts.
func (n *Network) WriteHosts(dir, hostname string, ip net.IP) (string, error) {
	if hostname == "" || strings.ContainsAny(hostname, " \t\r\n#") {
		return "", fmt.Errorf("network: hosts: hostname %q: %w", hostname, v1.ErrInvalid)
	}
	if ip == nil {
		return "", fmt.Errorf("network: hosts: no IP for %s: %w", hostname, v1.ErrInvalid)
	}
	content := fmt.Sprintf("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n%s\t%s\n", ip, hostname)
	return writeInstanceFile(dir, HostsFile, content)
}

// writeInstanceFile writes in place rather than by rename: a running
// container sees the file through a bind mount of its inode, and a rename
// would leave it looking at the old one.
func writeInstanceFile(dir, name, content string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("network: %w", err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		return "", fmt.Errorf("network: %w", err)
	}
	return path, nil
}
