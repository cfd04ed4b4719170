// Package node assembles what runs on a machine that hosts instances: a
// private containerd (or a given one), the containerd driver, the node
// network and the agent. `gantry up` runs it next to the server;
// `gantry agent` runs it alone against a remote server.
package node

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/gantry-dev/gantry/client"
	"github.com/gantry-dev/gantry/internal/agent"
	"github.com/gantry-dev/gantry/internal/network"
	"github.com/gantry-dev/gantry/internal/runtime"
)

// Config configures a node.
type Config struct {
	Name    string
	DataDir string
	// ContainerdSocket uses an existing containerd instead of starting
	// one under DataDir.
	ContainerdSocket string
	// LogDriver is the argv of the log driver binary: the gantry binary
	// and its hidden log-driver command.
	LogDriver []string
	// BridgeName, ClusterCIDR and NetNSDir configure the node network.
	BridgeName  string
	ClusterCIDR string
	NetNSDir    string
	Labels      map[string]string
	Address     string
	AgentURL    string
	// Credentials answers registry credentials per host.
	Credentials func(host string) (user, secret string)
	// CAPEM is the cluster CA, trusted for registry TLS; with it, even
	// loopback registries are reached over HTTPS.
	CAPEM []byte
	// ClusterDomain is the DNS domain of service names.
	ClusterDomain string
	// SampleInterval is how often instance metrics are sampled.
	SampleInterval time.Duration
}

// Node is a running node.
type Node struct {
	Agent   *agent.Agent
	Driver  *runtime.Driver
	Daemon  *runtime.Daemon
	Network *network.Network
	// Registry holds the node's Prometheus metrics (instances, node).
	Registry *prometheus.Registry

	cancel context.CancelFunc
	wg     sync.WaitGroup
	errc   chan error
}

// Start brings the node up: containerd, driver, and the agent, which
// registers with the server through api. It returns once the agent is
// registered and its network is ready.
func Start(ctx context.Context, cfg Config, api *client.Client, log *slog.Logger) (*Node, error) {
	ctx, cancel := context.WithCancel(ctx)
	n := &Node{cancel: cancel, errc: make(chan error, 2)}
	ok := false
	defer func() {
		if !ok {
			n.Stop()
		}
	}()
	addr := cfg.ContainerdSocket
	if addr == "" {
		d, err := runtime.StartDaemon(ctx, runtime.DaemonConfig{Dir: filepath.Join(cfg.DataDir, "containerd")}, log)
		if err != nil {
			return nil, err
		}
		n.Daemon = d
		addr = d.Address()
		// Supervise from here on: a containerd that dies while the node
		// connects is restarted, and runtime.New waits for it.
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if err := d.Supervise(ctx, func() { log.Warn("containerd restarted; instances continue through their shims") }); err != nil && ctx.Err() == nil {
				n.errc <- fmt.Errorf("containerd supervision: %w", err)
			}
		}()
	}
	rcfg := runtime.Config{Address: addr, LogDriver: cfg.LogDriver, Credentials: cfg.Credentials}
	if n.Daemon != nil {
		// Only of a containerd of our own is the limit known; another
		// keeps containerd's default.
		rcfg.OpenFiles = n.Daemon.OpenFilesLimit
	}
	if len(cfg.CAPEM) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(cfg.CAPEM) {
			return nil, fmt.Errorf("cluster CA is not valid PEM")
		}
		rcfg.RootCAs = pool
		rcfg.PlainHTTP = func(string) bool { return false }
	}
	drv, err := runtime.New(ctx, rcfg, log)
	if err != nil {
		return nil, err
	}
	n.Driver = drv
	secretDir := filepath.Join("/run/gantry/secrets", cfg.Name)
	if err := secretFS(secretDir); err != nil {
		return nil, err
	}
	a := agent.New(agent.Config{
		SecretDir: secretDir,
		NodeName:  cfg.Name, DataDir: filepath.Join(cfg.DataDir, "agent"), Labels: cfg.Labels,
		Address: cfg.Address, AgentURL: cfg.AgentURL, ClusterDomain: cfg.ClusterDomain,
		RuntimeName: "containerd", SampleInterval: cfg.SampleInterval,
		Network: func(subnet string) (agent.Network, error) {
			ncfg := network.Config{
				BridgeName: cfg.BridgeName, Subnet: subnet, ClusterCIDR: cfg.ClusterCIDR,
				DataDir: filepath.Join(cfg.DataDir, "net"), NetNSDir: cfg.NetNSDir,
				KeepBridge: bridgeWasThere(cfg.DataDir, cfg.BridgeName),
			}
			if err := saveState(cfg.DataDir, state{Network: ncfg, ContainerdSocket: cfg.ContainerdSocket, SecretDir: secretDir}); err != nil {
				return nil, err
			}
			nw, err := network.New(ncfg, log)
			if err != nil {
				return nil, err
			}
			n.Network = nw
			return nw, nil
		},
	}, api, drv, log)
	n.Agent = a
	n.Registry = prometheus.NewRegistry()
	n.Registry.MustRegister(a.Collector(), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{Namespace: "gantry_agent"}))
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := a.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			n.errc <- fmt.Errorf("agent: %w", err)
		}
	}()
	select {
	case <-a.Ready():
	case err := <-n.errc:
		return nil, err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	ok = true
	return n, nil
}

// Err reports a fatal error.
func (n *Node) Err() <-chan error { return n.errc }

// Stop stops the agent. Containers and containerd keep running, so that a
// restarted node adopts them; use Down to remove everything.
func (n *Node) Stop() {
	n.cancel()
	n.wg.Wait()
	if n.Driver != nil {
		n.Driver.Close()
	}
}

// DefaultName is the node name: the host name.
func DefaultName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "node-1"
	}
	return sanitize(h)
}

func sanitize(h string) string {
	b := []byte{}
	for _, c := range []byte(h) {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			b = append(b, c)
		case c >= 'A' && c <= 'Z':
			b = append(b, c+32)
		case c == '-' || c == '.':
			b = append(b, '-')
		}
	}
	for len(b) > 0 && b[0] == '-' {
		b = b[1:]
	}
	// Cut before the trim at the end, which a cut may have made needed.
	if len(b) > 63 {
		b = b[:63]
	}
	for len(b) > 0 && b[len(b)-1] == '-' {
		b = b[:len(b)-1]
	}
	if len(b) == 0 {
		return "node-1"
	}
	return string(b)
}

// OutboundIP guesses the address other machines reach this one at.
func OutboundIP() string {
	conn, err := net.Dial("udp", "192.0.2.1:9")
	if err != nil {
		return "127.0.0.1"
	}
	defer conn.Close()
	return conn.LocalAddr().(*net.UDPAddr).IP.String()
}
