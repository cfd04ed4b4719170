package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/client"
	"github.com/gantry-dev/gantry/internal/dns"
	"github.com/gantry-dev/gantry/internal/image"
	"github.com/gantry-dev/gantry/internal/logfile"
	"github.com/gantry-dev/gantry/internal/node"
	"github.com/gantry-dev/gantry/internal/server"
)

// upOptions are the flags of `gantry up`.
type upOptions struct {
	dataDir       string
	apiAddr       string
	etcdEndpoints []string
	tlsNames      []string
	clusterCIDR   string
	logLevel      string
	logFormat     string
	configPath    string
	noAgent       bool
	nodeName      string
	containerd    string
	bridge        string
	netnsDir      string
	domain        string
	appsDomain    string
	dnsAddr       string
	dnsForward    []string
	noTLS         bool
	agentMetrics  string
	sampleEvery   time.Duration
	registryAddr  string
	registryHost  string
	ingressAddr   string
	// nodePortAddr is where node ports listen ("": the host of
	// ingressAddr).
	nodePortAddr string
	// ingressResponseTimeout bounds the wait for an instance's answer.
	ingressResponseTimeout time.Duration
	ingressHTTPS           string
	seed                   bool
	debugAddr              string
	apply                  []string
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", format)
}

// newServerCmd is `gantry up` without the local node: the server parts
// for a cluster whose nodes join with `gantry agent`.
func newServerCmd() *cobra.Command {
	cmd := newUpCmd()
	cmd.Use = "server"
	cmd.Short = "Run the server parts of a cluster (API, controllers, registry, DNS, load balancer); nodes join with `gantry agent`"
	cmd.Long = `Run a Gantry server: embedded etcd (or --etcd-endpoints), the API, the controllers,
the registry, DNS and the load balancer, without running containers here. Make a join
token with ` + "`gantry join-token create`" + ` and start ` + "`gantry agent --join`" + ` on each node.`
	cmd.Flags().Set("no-agent", "true")
	// What only a node of gantry up uses: hidden here, and refused if
	// given, rather than taken and ignored.
	nodeOnly := []string{"no-agent", "node-name", "containerd-socket", "bridge", "netns-dir", "agent-metrics-addr", "sample-interval"}
	for _, n := range nodeOnly {
		cmd.Flags().MarkHidden(n)
	}
	cmd.PreRunE = func(c *cobra.Command, _ []string) error {
		if on, _ := c.Flags().GetBool("no-agent"); !on {
			return errors.New("gantry server runs no node: use gantry up for a server with a node on this machine")
		}
		for _, n := range nodeOnly[1:] {
			if c.Flags().Changed(n) {
				return fmt.Errorf("--%s is for a node, and gantry server runs none: give it to gantry up, or to gantry agent on the node", n)
			}
		}
		return nil
	}
	return cmd
}

func newUpCmd() *cobra.Command {
	o := &upOptions{}
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run a complete single-node Gantry on this machine",
		Long: `Run a complete Gantry on this machine in one process: embedded etcd, the API
server and controllers, and (as they are enabled) the node agent with its own
containerd, the registry, DNS and the load balancer. State lives in the data
directory; stop with Ctrl-C and start again to continue where you left off.

The first start creates a cluster admin and writes the CLI config
(~/.gantry/config, mode 0600) so that other gantry commands just work.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.configPath = upConfigPath(cmd, o.configPath)
			return runUp(cmd, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dataDir, "data-dir", defaultHome(), "directory for all state (etcd, containers, images, logs)")
	f.StringVar(&o.apiAddr, "api-addr", "127.0.0.1:7443", "address the API listens on")
	f.StringSliceVar(&o.etcdEndpoints, "etcd-endpoints", nil, "use this external etcd cluster instead of the embedded one")
	f.StringSliceVar(&o.tlsNames, "tls-name", nil, "more names or addresses the API and registry certificates cover (repeat it): those by which other machines reach this one, beyond its host name and outbound address")
	f.StringVar(&o.clusterCIDR, "cluster-cidr", "10.77.0.0/16", "address range split into per-node instance subnets")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", "text", "text or json")
	f.StringVar(&o.configPath, "write-config", "", "where to write the CLI config (default ~/.gantry/config)")
	f.BoolVar(&o.noAgent, "no-agent", false, "run only the server part (no containers on this machine)")
	f.StringVar(&o.nodeName, "node-name", node.DefaultName(), "name of this machine's node")
	f.StringVar(&o.containerd, "containerd-socket", "", "use this containerd instead of starting a private one under the data dir")
	f.StringVar(&o.bridge, "bridge", "gantry0", "name of the Linux bridge instances attach to")
	f.StringVar(&o.netnsDir, "netns-dir", "/run/gantry/netns", "where instance network namespaces are mounted")
	f.StringVar(&o.domain, "cluster-domain", "gantry.internal", "DNS domain of service names")
	f.StringVar(&o.appsDomain, "apps-domain", "localhost", "domain of the default app hostnames (APP.NS.DOMAIN)")
	f.StringVar(&o.agentMetrics, "agent-metrics-addr", "127.0.0.1:7445", "where this node's agent serves /metrics (empty: nowhere)")
	f.DurationVar(&o.sampleEvery, "sample-interval", 10*time.Second, "how often instance CPU and memory are sampled")
	f.BoolVar(&o.noTLS, "insecure-no-tls", false, "serve the API and registry over plain HTTP (for debugging only)")
	f.StringVar(&o.debugAddr, "debug-addr", "", "serve Go's /debug/pprof profiles here (e.g. 127.0.0.1:6060; off by default)")
	f.BoolVar(&o.seed, "seed", false, "push the busybox seed image (library/busybox:latest) once up")
	f.StringSliceVar(&o.apply, "apply", nil, "apply these manifests once up (the demo of make up)")
	f.StringVar(&o.ingressAddr, "ingress-addr", ":8080", "where the HTTP load balancer listens (empty: no load balancer)")
	f.StringVar(&o.ingressHTTPS, "ingress-https-addr", "", "where the HTTPS load balancer listens, for routes with tls (e.g. :8443)")
	f.StringVar(&o.nodePortAddr, "node-port-addr", "", "the address node ports of expose: tcp ports listen on (default: the host of --ingress-addr, so every address with :8080; 0.0.0.0 for every address)")
	f.DurationVar(&o.ingressResponseTimeout, "ingress-response-timeout", 0, "how long the load balancer waits for an instance to start answering before a 504 (0: no limit, for long polls; nginx's proxy_read_timeout is 60s)")
	f.StringVar(&o.registryAddr, "registry-addr", ":5000", "where the OCI registry listens (empty: no registry)")
	f.StringVar(&o.registryHost, "registry-host", "", "host:port that image references use for the registry (default: the listen address, with a wildcard host as this machine's outbound address when --api-addr is not loopback, else 127.0.0.1)")
	f.StringVar(&o.dnsAddr, "dns-addr", "127.0.0.1:5353", "host address of the DNS server (UDP and TCP; empty: none)")
	f.StringSliceVar(&o.dnsForward, "dns-forward-from", nil, "client networks (CIDR) whose queries for other names the DNS server forwards upstream, or none (default: loopback, private ranges and the cluster CIDR)")
	return cmd
}

func runUp(cmd *cobra.Command, o *upOptions) error {
	log, err := newLogger(o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	start := time.Now()
	dataDir, err := filepath.Abs(o.dataDir)
	if err != nil {
		return err
	}
	cfg := server.DefaultConfig(dataDir)
	cfg.APIAddr = o.apiAddr
	cfg.EtcdEndpoints = o.etcdEndpoints
	cfg.TLSNames = o.tlsNames
	cfg.API.ClusterCIDR = o.clusterCIDR
	cfg.DNSAddr = o.dnsAddr
	cfg.RegistryAddr, cfg.RegistryHost = o.registryAddr, o.registryHost
	cfg.TLS = !o.noTLS
	cfg.IngressAddr, cfg.IngressHTTPSAddr = o.ingressAddr, o.ingressHTTPS
	if err := checkSampleInterval(o.sampleEvery); err != nil {
		return err
	}
	if o.ingressResponseTimeout < 0 {
		return fmt.Errorf("--ingress-response-timeout %s: give a duration of 0 (no limit) or more", o.ingressResponseTimeout)
	}
	cfg.Ingress.ResponseHeaderTimeout = o.ingressResponseTimeout
	if o.nodePortAddr != "" {
		if net.ParseIP(o.nodePortAddr) == nil {
			return fmt.Errorf("--node-port-addr %q: give an IP address (0.0.0.0 for every address), without a port", o.nodePortAddr)
		}
		cfg.Ingress.TCPBindAddress = o.nodePortAddr
	}
	if _, err := dns.CanonicalZone(o.domain); err != nil {
		return fmt.Errorf("--cluster-domain %q: %w", o.domain, err)
	}
	if _, err := dns.CanonicalZone(o.appsDomain); err != nil {
		return fmt.Errorf("--apps-domain %q: %w", o.appsDomain, err)
	}
	if _, _, err := dns.CheckDomains(o.domain, o.appsDomain); err != nil {
		return fmt.Errorf("--cluster-domain %q, --apps-domain %q: %w", o.domain, o.appsDomain, err)
	}
	if o.ingressHTTPS != "" && o.ingressAddr == "" {
		return fmt.Errorf("--ingress-https-addr %s needs --ingress-addr: the HTTPS load balancer runs beside the HTTP one", o.ingressHTTPS)
	}
	cfg.DNS.Domain = o.domain
	cfg.DNS.AppsDomain = o.appsDomain
	if cfg.DNS.ForwardFrom, err = forwardFrom(o.dnsForward, o.clusterCIDR); err != nil {
		return err
	}
	pidPath := filepath.Join(dataDir, "gantry.pid")
	if pidAlive(pidPath) {
		return fmt.Errorf("another gantry up runs on %s (pid file %s)", dataDir, pidPath)
	}
	if o.debugAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		ln, err := net.Listen("tcp", o.debugAddr)
		if err != nil {
			return fmt.Errorf("--debug-addr %s: %w", o.debugAddr, err)
		}
		defer ln.Close()
		go http.Serve(ln, mux)
	}
	srv, err := server.Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer srv.Stop()
	os.WriteFile(pidPath, []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o600)
	defer os.Remove(pidPath)

	cfgPath := o.configPath
	if cfgPath == "" {
		cfgPath = defaultConfigPath()
	}
	cc, err := loadConfig(cfgPath)
	if err != nil {
		return err
	}
	cc.Server = srv.APIURL
	if srv.AdminToken != "" {
		cc.Token = srv.AdminToken
	}
	cc.Registry = srv.Config.RegistryHost
	cc.CA = string(srv.CAPEM)
	if err := saveConfig(cfgPath, cc); err != nil {
		return fmt.Errorf("write CLI config %s: %w", cfgPath, err)
	}
	if !o.noAgent {
		nd, err := startLocalNode(ctx, o, srv, dataDir, log)
		if err != nil {
			return err
		}
		defer nd.Stop()
		go func() {
			if err := <-nd.Err(); err != nil {
				srv.Fail(err)
			}
		}()
	}
	if err := upExtras(ctx, cmd, o, srv, cc); err != nil {
		return err
	}
	log.Info("gantry is up", "api", srv.APIURL, "data", dataDir, "config", cfgPath, "startup", time.Since(start).Round(time.Millisecond))
	// The CLI finds the config by itself only at its default place.
	cli := "gantry"
	if cfgPath != defaultConfigPath() {
		cli = "gantry --config " + cfgPath
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "\nGantry is up (%s). Try:\n  %s apply -f examples/hello.yaml\n  %s get apps\n\n", strings.TrimPrefix(srv.APIURL, "http://"), cli, cli)

	select {
	case <-ctx.Done():
		log.Info("shutting down")
		return nil
	case err := <-srv.Err():
		return err
	}
}

// startLocalNode runs this machine's node in the same process as the
// server, with its own node credential.
func startLocalNode(ctx context.Context, o *upOptions, srv *server.Server, dataDir string, log *slog.Logger) (*node.Node, error) {
	tok, err := srv.NodeCredential(ctx, o.nodeName)
	if err != nil {
		return nil, fmt.Errorf("node credential: %w", err)
	}
	api, err := client.New(client.Config{Server: srv.APIURL, Token: tok, CA: srv.CAPEM, UserAgent: "gantry-agent/" + version})
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	if self, err = filepath.EvalSymlinks(self); err != nil {
		return nil, err
	}
	regHost := srv.Config.RegistryHost
	creds := func(host string) (string, string) {
		if host == regHost {
			return "node", tok
		}
		return "", ""
	}
	nd, err := node.Start(ctx, node.Config{
		Credentials: creds, CAPEM: srv.CAPEM,
		Name: o.nodeName, DataDir: filepath.Join(dataDir, "node"), ContainerdSocket: o.containerd,
		LogDriver: logDriverArgv(ctx, self, log), BridgeName: o.bridge, ClusterCIDR: o.clusterCIDR,
		NetNSDir: o.netnsDir, Address: node.OutboundIP(), ClusterDomain: o.domain, SampleInterval: o.sampleEvery,
	}, api, log)
	if err != nil {
		return nil, fmt.Errorf("start node %s: %w", o.nodeName, err)
	}
	srv.Nodes.AddLocal(o.nodeName, nd.Agent.Handler())
	if _, err := serveNodeMetrics(ctx, o.agentMetrics, "--agent-metrics-addr", nd.Registry, log); err != nil {
		nd.Stop()
		return nil, err
	}
	// Containers resolve through the node's bridge gateway.
	if gw := nd.Network.Gateway(); gw != nil {
		if err := srv.ServeDNSOn(ctx, net.JoinHostPort(gw.String(), "53")); err != nil {
			nd.Stop()
			return nil, fmt.Errorf("DNS for containers on %s: %w", gw, err)
		}
	}
	return nd, nil
}

// logDriverCommand is the hidden command containerd's shim runs to write
// container logs when the gantry-logdriver binary is not at hand.
const logDriverCommand = "__log-driver"

// logDriverBinary is the small log driver built next to gantry.
const logDriverBinary = "gantry-logdriver"

// logDriverArgv is what the shim runs as log driver: the gantry-logdriver
// binary next to self if it reports gantry's own version, else gantry's
// hidden __log-driver command. Both run the same code; the small binary
// starts 15-25 ms sooner, and that start-up is on every deploy's path.
func logDriverArgv(ctx context.Context, self string, log *slog.Logger) []string {
	fallback := []string{self, logDriverCommand}
	bin := filepath.Join(filepath.Dir(self), logDriverBinary)
	if _, err := os.Stat(bin); err != nil {
		log.Debug("log driver: no "+logDriverBinary+" next to gantry; using gantry "+logDriverCommand, "path", bin)
		return fallback
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if got := strings.TrimSpace(string(out)); err != nil || got != version {
		log.Warn("log driver: "+bin+" does not match this gantry; using gantry "+logDriverCommand+" (rebuild both with make build)",
			"want_version", version, "got_version", got, "err", err)
		return fallback
	}
	return []string{bin}
}

func newLogDriverCmd() *cobra.Command {
	return &cobra.Command{
		Use:    logDriverCommand,
		Hidden: true,
		// The shim passes its own arguments; cobra must not parse them.
		DisableFlagParsing: true,
		Run: func(cmd *cobra.Command, args []string) {
			logfile.RunDriver()
		},
	}
}

func newDownCmd() *cobra.Command {
	var dataDir string
	var purge bool
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Remove what `gantry up` left running: containers, network, containerd",
		Long: `Stop and remove every container of this machine's node, its network (bridge,
network namespaces, iptables rules) and the private containerd. Run it after
stopping gantry up. With --purge the data directory (state, images, logs) goes too.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			log, _ := newLogger("warn", "text")
			// The server holds the directory's lock from its first step;
			// its pid file comes only once it has started. Held here
			// too, no server starts on it while down runs.
			unlock, err := holdDataDir(dataDir)
			if err != nil {
				return err
			}
			defer unlock()
			if pidAlive(filepath.Join(dataDir, "gantry.pid")) {
				if _, err := os.Stat(filepath.Join(dataDir, "identity.json")); err == nil {
					return fmt.Errorf("gantry agent is still running on %s: stop it first", dataDir)
				}
				return fmt.Errorf("gantry up (or gantry server) is still running on %s: stop it first (Ctrl-C)", dataDir)
			}
			agentDir := filepath.Join(dataDir, "agent")
			if pidAlive(filepath.Join(agentDir, "gantry.pid")) {
				return fmt.Errorf("gantry agent is still running on %s: stop it first", agentDir)
			}
			// gantry up keeps its node under DATA/node; gantry agent
			// under DATA/agent by default, or in the --data-dir it was
			// given (which down may be pointed at).
			found := false
			for _, d := range []string{filepath.Join(dataDir, "node"), agentDir, dataDir} {
				found = found || node.Ran(d)
				if err := node.Down(cmd.Context(), d, log); err != nil {
					return err
				}
			}
			if purge {
				if err := purgeDataDir(dataDir); err != nil {
					return err
				}
			}
			if !found && !purge {
				fmt.Fprintf(cmd.OutOrStdout(), "no node ran with %s as its data directory: nothing taken down (give --data-dir the directory gantry up or gantry agent used)\n", dataDir)
				return nil
			}
			fmt.Fprintln(cmd.OutOrStdout(), "gantry is down")
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultHome(), "the data directory of gantry up")
	cmd.Flags().BoolVar(&purge, "purge", false, "also delete the data directory")
	return cmd
}

// holdDataDir takes the lock a Gantry server holds on its data directory
// (DATA/gantry.lock) for as long as down works there, and refuses when a
// server holds it: one still starting has written no pid file yet.
func holdDataDir(dir string) (unlock func(), err error) {
	f, err := server.TryLockDataDir(dir, false)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return func() {}, nil // no server ever ran here
	case errors.Is(err, server.ErrDataDirInUse):
		return nil, fmt.Errorf("gantry up (or gantry server) is running on %s (it holds %s), maybe still starting: stop it first (Ctrl-C)", dir, filepath.Join(dir, "gantry.lock"))
	case errors.Is(err, fs.ErrPermission):
		return nil, fmt.Errorf("%w: run gantry down as the user gantry up ran as (usually root)", err)
	case err != nil:
		return nil, err
	}
	return func() { f.Close() }, nil
}

// upConfigPath is where gantry up writes the CLI config: --write-config,
// else the global --config (the file other commands then read), else
// GANTRY_CONFIG or ~/.gantry/config. "" means the default.
func upConfigPath(cmd *cobra.Command, writeConfig string) string {
	if writeConfig != "" {
		return writeConfig
	}
	if f := cmd.Flags().Lookup("config"); f != nil && f.Changed {
		return f.Value.String()
	}
	return ""
}

// purgeDataDir deletes a data directory of gantry up or gantry agent:
// the directory a symbolic link leads to, then the link. It refuses one
// that holds none of what Gantry keeps there, so that a mistyped
// --data-dir or GANTRY_HOME cannot wipe someone's files.
func purgeDataDir(dataDir string) error {
	dir, err := filepath.EvalSymlinks(dataDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return err
	}
	home, _ := os.UserHomeDir()
	if dir == "/" || dir == home {
		return fmt.Errorf("refusing to purge %s: give the data directory of gantry up (--data-dir)", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	ours := len(entries) == 0
	for _, marker := range []string{"etcd", "pki", "admin-token", "node", "agent", "gantry.pid"} {
		if _, err := os.Lstat(filepath.Join(dir, marker)); err == nil {
			ours = true
		}
	}
	if !ours {
		return fmt.Errorf("refusing to purge %s: it holds nothing of Gantry's (no etcd, pki, node or agent); delete it yourself if it is meant to go", dir)
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if dir != dataDir {
		if err := os.Remove(dataDir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// pidAlive reports whether the pid in path names a running gantry other
// than this process: a file left by one that died may name the pid this
// process now has (pid 1 in a container, or one reused after a reboot).
func pidAlive(path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	var pid int
	if _, err := fmt.Sscanf(string(b), "%d", &pid); err != nil || pid <= 0 || pid == os.Getpid() {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.Contains(string(cmdline), "gantry")
}

// upExtras seeds the busybox image and applies manifests, for a demo that
// works out of the box.
func upExtras(ctx context.Context, cmd *cobra.Command, o *upOptions, srv *server.Server, cc *CLIConfig) error {
	if o.seed && srv.Registry != nil {
		ref, d, err := image.Seed(ctx, srv.Config.RegistryHost, imageAuth(cc), nil)
		if err != nil {
			return fmt.Errorf("seed busybox image: %w", err)
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "seeded %s@%s\n", ref, d)
	}
	if len(o.apply) == 0 {
		return nil
	}
	objs, err := readManifests(o.apply, os.Stdin, "")
	if err != nil {
		return err
	}
	c, err := client.New(client.Config{Server: srv.APIURL, Token: cc.Token, CA: []byte(cc.CA)})
	if err != nil {
		return err
	}
	for _, obj := range inApplyOrder(objs) { // as gantry apply: a Namespace before what goes in it
		res, err := c.Apply(ctx, obj)
		if err != nil {
			return fmt.Errorf("apply %s/%s: %w", strings.ToLower(obj.GetType().Kind), obj.GetMeta().Name, err)
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "%s/%s %s\n", strings.ToLower(obj.GetType().Kind), obj.GetMeta().Name, res)
	}
	return nil
}

// forwardFrom turns --dns-forward-from into the DNS server's client
// networks. Unset, it is the DNS default plus the cluster CIDR, which
// need not be a private range; "none" forwards for no one.
func forwardFrom(flag []string, clusterCIDR string) ([]netip.Prefix, error) {
	if len(flag) == 1 && flag[0] == "none" {
		return []netip.Prefix{}, nil
	}
	if len(flag) > 0 {
		out := make([]netip.Prefix, 0, len(flag))
		for _, f := range flag {
			p, err := parseNetwork(f)
			if err != nil {
				return nil, fmt.Errorf("--dns-forward-from: %w", err)
			}
			out = append(out, p)
		}
		return out, nil
	}
	cluster, err := netip.ParsePrefix(clusterCIDR)
	if err != nil {
		return nil, fmt.Errorf("--cluster-cidr %q: give a network such as 10.77.0.0/16", clusterCIDR)
	}
	out := slices.Clone(dns.DefaultForwardFrom)
	for _, p := range out {
		if p.Bits() <= cluster.Bits() && p.Contains(cluster.Addr()) {
			return out, nil // already covered
		}
	}
	return append(out, cluster.Masked()), nil
}

// parseNetwork reads a CIDR, or a single address as a one-host network.
func parseNetwork(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, fmt.Errorf("%q is not a network: give a CIDR such as 192.0.2.0/24, an address, or none", s)
}

// serveNodeMetrics serves a node agent's metrics, reg, at /metrics over
// plain HTTP on addr (none when empty), for Prometheus, until ctx ends. It
// returns the address it listens on. flag names the option that sets
// addr, for the error.
func serveNodeMetrics(ctx context.Context, addr, flag string, reg prometheus.Gatherer, log *slog.Logger) (net.Addr, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("agent metrics listener on %s: %w (pass %s, empty for none)", addr, err, flag)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	log.Info("agent metrics listening", "addr", ln.Addr().String())
	go func() { <-ctx.Done(); hs.Close() }()
	return ln.Addr(), nil
}
