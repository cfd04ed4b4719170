// Package server assembles the server side of Gantry in one process: the
// store (embedded etcd or an external cluster), the API server, the
// controllers, and — as they are configured — the registry, DNS and
// ingress. `gantry up` runs it next to an agent; `gantry server` runs it
// alone.
//
// It owns start-up order, first-start bootstrap (default namespace, admin
// credential) and shutdown; it holds no logic of its own beyond wiring.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	clientv3 "go.etcd.io/etcd/client/v3"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/alert"
	"github.com/gantry-dev/gantry/internal/apiserver"
	"github.com/gantry-dev/gantry/internal/audit"
	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/controller"
	"github.com/gantry-dev/gantry/internal/discovery"
	"github.com/gantry-dev/gantry/internal/dns"
	"github.com/gantry-dev/gantry/internal/events"
	"github.com/gantry-dev/gantry/internal/informer"
	"github.com/gantry-dev/gantry/internal/ingress"
	"github.com/gantry-dev/gantry/internal/metrics"
	"github.com/gantry-dev/gantry/internal/notify"
	"github.com/gantry-dev/gantry/internal/pki"
	"github.com/gantry-dev/gantry/internal/registry"
	"github.com/gantry-dev/gantry/internal/scheduler"
	"github.com/gantry-dev/gantry/internal/secrets"
	"github.com/gantry-dev/gantry/internal/store"
)

// Config configures the server process. DefaultConfig gives defaults.
type Config struct {
	// DataDir holds etcd's data and the server's keys.
	DataDir string
	// APIAddr is where the API listens.
	APIAddr string
	// EtcdEndpoints, when set, use an external etcd instead of the
	// embedded one.
	EtcdEndpoints []string
	// API holds the API server's settings.
	API apiserver.Config
	// EvictAfter is how long a node may be NotReady before its
	// instances are rescheduled.
	EvictAfter time.Duration
	// TLS serves the API and the registry over HTTPS with certificates of
	// the built-in CA (made at first start under DataDir/pki). TLSNames
	// are extra host names and IPs for the certificates.
	TLS      bool
	TLSNames []string
	// RegistryAddr is where the OCI registry listens (empty: no
	// registry); RegistryHost is the host:port image references use for
	// it, and RegistryURL its public base URL (token realm).
	RegistryAddr string
	RegistryHost string
	RegistryURL  string
	// IngressAddr and IngressHTTPSAddr are the load balancer's listeners
	// (empty: none); Ingress holds its other settings.
	IngressAddr      string
	IngressHTTPSAddr string
	Ingress          ingress.Config
	// DNS configures service discovery; DNSAddr is its host listener
	// (empty: none).
	DNS     dns.Config
	DNSAddr string
}

// DefaultConfig returns the defaults for a data directory.
func DefaultConfig(dataDir string) Config {
	return Config{
		DataDir:      dataDir,
		APIAddr:      "127.0.0.1:7443",
		API:          apiserver.DefaultConfig(),
		EvictAfter:   5 * time.Second,
		DNS:          dns.Config{Domain: dns.DefaultDomain, AppsDomain: dns.DefaultAppsDomain},
		DNSAddr:      "127.0.0.1:5353",
		RegistryAddr: ":5000",
		TLS:          true,
		IngressAddr:  ":8080",
		Ingress:      ingress.Config{AccessLog: true},
	}
}

// Server is a running server.
type Server struct {
	dataLock   *os.File
	Config     Config
	Store      *store.Store
	API        *apiserver.Server
	Metrics    *prometheus.Registry
	regMetrics *registryMetrics
	Registry   *registry.Registry
	Recorder   *events.Recorder
	Instances  *informer.Informer[*v1.Instance]
	Apps       *informer.Informer[*v1.App]
	Namespaces *informer.Informer[*v1.Namespace]
	// Autoscaler sets replicas of Apps with spec.autoscale.
	Autoscaler *controller.Autoscaler
	// Notify delivers alerts and deploy events to chat and webhooks.
	Notify *notify.Manager
	// Audit is the hash-chained record of every API and registry request.
	Audit *audit.Log
	// Window holds the last hour of resource samples.
	Window *metrics.Window
	// Ingress is the HTTP/TCP load balancer.
	Ingress *ingress.Proxy
	// Discovery publishes service snapshots for DNS and the ingress.
	Discovery *discovery.Watcher
	DNS       *dns.Server
	// CA is the cluster CA; CAPEM its certificate, which clients trust.
	CA    *pki.CA
	CAPEM []byte
	// Nodes reaches agents for logs and exec.
	Nodes      *apiserver.Nodes
	AdminToken string
	// APIURL is the address clients use.
	APIURL string

	log      *slog.Logger
	etcd     *store.Embedded
	cli      *clientv3.Client
	listener net.Listener
	wg       sync.WaitGroup
	cancel   context.CancelFunc
	errc     chan error
}

// check refuses, before anything starts, what the parts would take in
// different senses, and puts the domains in the one form they all use
// (lower case, fully qualified): an apps domain given as "localhost."
// made the API's default-host check miss hosts the load balancer matched.
func (cfg *Config) check() error {
	if cfg.DNS.Domain == "" {
		cfg.DNS.Domain = dns.DefaultDomain
	}
	if cfg.DNS.AppsDomain == "" {
		cfg.DNS.AppsDomain = dns.DefaultAppsDomain
	}
	var err error
	if cfg.DNS.Domain, cfg.DNS.AppsDomain, err = dns.CheckDomains(cfg.DNS.Domain, cfg.DNS.AppsDomain); err != nil {
		return err
	}
	if cfg.IngressHTTPSAddr != "" && cfg.IngressAddr == "" {
		return fmt.Errorf("the HTTPS load balancer (%s) runs beside the HTTP one, which has no address: give the ingress address too, or no HTTPS address: %w", cfg.IngressHTTPSAddr, v1.ErrInvalid)
	}
	return nil
}

// Start brings the server up and returns once the API answers. Stop (or
// ending ctx) shuts it down.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (*Server, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	// One server per data directory: a second one would remove the
	// first's etcd sockets and then wait for ever on etcd's own lock.
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &Server{Config: cfg, log: log, cancel: cancel, errc: make(chan error, 4), Metrics: prometheus.NewRegistry(), dataLock: lock}
	ok := false
	defer func() {
		if !ok {
			s.Stop()
		}
	}()
	if len(cfg.EtcdEndpoints) > 0 {
		cli, err := store.Connect(ctx, cfg.EtcdEndpoints)
		if err != nil {
			return nil, err
		}
		s.cli = cli
	} else {
		e, err := store.StartEmbedded(ctx, store.EmbedConfig{Dir: filepath.Join(cfg.DataDir, "etcd"), Logger: log})
		if err != nil {
			return nil, err
		}
		s.etcd = e
		s.cli = e.Client
	}
	s.Store = store.New(s.cli, "")
	// One watch per kind feeds every component that follows it.
	s.Instances = informer.New[*v1.Instance](s.Store, log)
	s.Apps = informer.New[*v1.App](s.Store, log)
	s.Namespaces = informer.New[*v1.Namespace](s.Store, log)
	s.goRun(func() error { s.Namespaces.Run(ctx); return nil })
	if err := s.bootstrap(ctx); err != nil {
		return nil, err
	}
	if cfg.TLS {
		ca, err := pki.LoadOrCreateCA(cfg.DataDir)
		if err != nil {
			return nil, fmt.Errorf("cluster CA: %w", err)
		}
		s.CA, s.CAPEM = ca, ca.CertPEM()
	}

	s.Recorder = events.NewRecorder(s.Store, "server", log)
	s.Notify = &notify.Manager{Store: s.Store, Log: log.With("component", "notify"), Metrics: notify.NewMetrics(s.Metrics),
		Guard: notify.NewGuard(cfg.APIAddr).RefuseNetwork(cfg.API.ClusterCIDR, "the cluster network"), Apps: s.Apps}
	s.Recorder.Listen(s.Notify.ObserveEvent)
	acfg := audit.DefaultConfig()
	acfg.Store, acfg.Dir = s.Store, filepath.Join(cfg.DataDir, "audit")
	al, err := audit.New(ctx, acfg, log.With("component", "audit"))
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	s.Audit = al
	authn := &auth.Authenticator{Store: s.Store, Log: log}
	authz := &auth.Authorizer{Store: s.Store}
	if cfg.RegistryAddr != "" {
		if err := s.startRegistry(ctx, authn, authz); err != nil {
			return nil, err
		}
		if cfg.RegistryHost == "" {
			cfg.RegistryHost = registryHost(cfg.RegistryAddr, cfg.APIAddr)
		}
		cfg.API.Registry = cfg.RegistryHost
		s.Config = cfg
	}
	s.Nodes = apiserver.NewNodes()
	s.Window = metrics.NewWindow(time.Hour, 10*time.Second)
	s.Metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), newWindowCollector(s.Window))
	keys, err := secrets.LoadKeyring(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("secret master key: %w", err)
	}
	codec := secrets.NewCodec(keys)
	s.Notify.Secrets = func(ctx context.Context, ns string, ref v1.SecretRef) (string, error) {
		sec, err := store.Get[*v1.Secret](ctx, s.Store, ns, ref.Name)
		if err != nil {
			return "", err
		}
		if sec.Sealed == nil {
			return "", fmt.Errorf("%w: secret %s is empty", v1.ErrNotFound, ref.Name)
		}
		data, err := codec.Open(ns, ref.Name, &secrets.SealedData{KeyID: sec.Sealed.KeyID, WrappedKey: sec.Sealed.WrappedKey, Nonce: sec.Sealed.Nonce, Ciphertext: sec.Sealed.Ciphertext})
		if err != nil {
			return "", err
		}
		v, ok := data[ref.Key]
		if !ok {
			return "", fmt.Errorf("%w: secret %s has no key %q", v1.ErrNotFound, ref.Name, ref.Key)
		}
		return string(v), nil
	}
	opts := []apiserver.Option{apiserver.WithNodeProxy(s.Nodes), apiserver.WithMetrics(s.Window), apiserver.WithPrometheus(s.Metrics),
		apiserver.WithAuditLog(s.Audit), apiserver.WithSecrets(codec), apiserver.WithNotifierTester(s.Notify),
		apiserver.WithRegistryHost(cfg.RegistryHost), apiserver.WithNamespaceCache(s.Namespaces), apiserver.WithEvents(s.Recorder)}
	if s.CA != nil {
		opts = append(opts, apiserver.WithCA(s.CA))
		// The server proves itself to agents with a client certificate
		// when it forwards logs and exec.
		// It is issued again as it nears its end.
		cc, err := s.CA.NewServerClientCert()
		if err != nil {
			return nil, err
		}
		// A route's certificate for a node's name or address is the
		// cluster CA's too: it must not pass for the agent.
		s.Nodes.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.CA.Pool(), GetClientCertificate: cc.GetClientCertificate, MinVersion: tls.VersionTLS12,
			VerifyConnection: pki.RefuseRoutes}, ForceAttemptHTTP2: false, IdleConnTimeout: 90 * time.Second}
	}
	if s.Registry != nil {
		opts = append(opts, apiserver.WithImageResolver(imageResolver{host: cfg.RegistryHost, reg: s.Registry}),
			apiserver.WithRegistryGC(func(ctx context.Context) (any, error) { return s.Registry.GC(ctx) }))
	}
	cfg.API.IngressHTTPS = cfg.IngressHTTPSAddr != ""
	if cfg.API.AppsDomain == "" {
		cfg.API.AppsDomain = strings.TrimSuffix(cfg.DNS.AppsDomain, ".")
	}
	if cfg.API.ServiceDomain == "" {
		cfg.API.ServiceDomain = strings.TrimSuffix(cfg.DNS.Domain, ".")
	}
	s.API = apiserver.New(cfg.API, s.Store, authn, authz, log, opts...)
	s.Metrics.MustRegister(s.API.Collectors()...)

	ln, err := net.Listen("tcp", cfg.APIAddr)
	if err != nil {
		return nil, fmt.Errorf("API listener on %s: %w (is another gantry running? pass --api-addr)", cfg.APIAddr, err)
	}
	s.listener = ln
	s.APIURL = "http://" + advertised(ln.Addr().String())
	if s.CA != nil {
		tl, err := s.tlsListener(ln, "api")
		if err != nil {
			ln.Close()
			return nil, err
		}
		ln = tl
		s.APIURL = "https://" + advertised(s.listener.Addr().String())
	}
	s.goRun(func() error { return s.API.Serve(ctx, ln, nil) })
	s.goRun(func() error { s.Recorder.Run(ctx); return nil })
	s.Notify.ClusterURL = s.APIURL
	s.goRun(func() error { s.Notify.Run(ctx); return nil })

	rollout := controller.NewRollout(s.Store, s.Recorder, log, s.Instances, s.Apps)
	rollout.Metrics = controller.NewRolloutMetrics(s.Metrics)
	rollout.Admit = s.API.AdmitRollback
	rollout.HoldQuota = s.API.HoldQuota
	rollout.HoldClaims = s.API.HoldClaims
	rollout.Nodes = informer.New[*v1.Node](s.Store, log)
	s.Metrics.MustRegister(newEtcdCollector(s.cli))
	s.goRun(func() error { s.Instances.Run(ctx); return nil })
	s.goRun(func() error { s.Apps.Run(ctx); return nil })
	s.goRun(func() error { rollout.Run(ctx, 4); return nil })
	s.Autoscaler = &controller.Autoscaler{Store: s.Store, Apps: rollout.Apps, Window: s.Window, Quota: s.API.FitReplicas,
		HoldQuota: s.API.HoldQuota, Recorder: s.Recorder, Log: log.With("controller", "autoscaler")}
	s.Discovery = discovery.NewWatcher(s.Store, s.Instances, s.Apps, log)
	s.goRun(func() error { s.Discovery.Run(ctx); return nil })
	cfg.DNS.Registerer = s.Metrics
	if cfg.DNS.InstanceNetworks == nil {
		// Instances not yet in a snapshot must not count as "not an
		// instance", who get every namespace's route hosts.
		if cfg.DNS.InstanceNetworks, err = instanceNetworks(cfg.API.ClusterCIDR); err != nil {
			return nil, err
		}
	}
	if cfg.IngressAddr != "" {
		cfg.DNS.LoadBalancer = loadBalancerIPs(cfg.IngressAddr)
		if err := s.startIngress(ctx, codec); err != nil {
			return nil, err
		}
		s.Autoscaler.Requests = s.Ingress
	}
	s.goRun(func() error { s.Autoscaler.Run(ctx); return nil })
	d, err := dns.New(cfg.DNS, s.Discovery, log.With("component", "dns"))
	if err != nil {
		return nil, err // it says "dns: …"
	}
	s.DNS = d
	if cfg.DNSAddr != "" {
		pc, ln, err := listenDNS(cfg.DNSAddr, false)
		if err != nil {
			return nil, fmt.Errorf("DNS listener on %s: %w (pass --dns-addr)", cfg.DNSAddr, err)
		}
		s.goRun(func() error { return d.Serve(ctx, pc, ln) })
	}
	sched := &scheduler.Scheduler{Store: s.Store, Recorder: s.Recorder, Log: log.With("controller", "scheduler"), Metrics: scheduler.NewMetrics(s.Metrics)}
	s.goRun(func() error { return sched.Run(ctx) })
	s.goRun(func() error {
		// Series of instances gone for longer than the window are dropped.
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case now := <-t.C:
				s.Window.Forget(now.Add(-time.Hour))
			}
		}
	})
	alerts := &alert.Evaluator{Store: s.Store, Window: s.Window, Notify: s.Notify, Recorder: s.Recorder,
		Log: log.With("controller", "alerts"), Metrics: alert.NewMetrics(s.Metrics), Instances: s.Instances, Apps: s.Apps}
	s.goRun(func() error { alerts.Run(ctx); return nil })
	nodes := &controller.NodeLifecycle{Store: s.Store, Heartbeats: s.API.Heartbeats(), Instances: s.Instances, Recorder: s.Recorder, Log: log, EvictAfter: cfg.EvictAfter}
	s.goRun(func() error { nodes.Run(ctx); return nil })
	if s.etcd != nil {
		s.goRun(func() error {
			select {
			case err := <-s.etcd.Err():
				return fmt.Errorf("embedded etcd: %w", err)
			case <-ctx.Done():
				return nil
			}
		})
		// Reclaims etcd's free pages, and its space after a NOSPACE alarm.
		s.goRun(func() error { s.etcd.KeepSpace(ctx, 30*time.Second); return nil })
	}
	ok = true
	return s, nil
}

func (s *Server) goRun(fn func() error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := fn(); err != nil && !errors.Is(err, context.Canceled) {
			s.errc <- err
		}
	}()
}

// Fail reports a fatal error of a component started next to the server.
func (s *Server) Fail(err error) {
	select {
	case s.errc <- err:
	default:
	}
}

// Err reports a fatal error of a component.
func (s *Server) Err() <-chan error { return s.errc }

// Stop shuts everything down and waits for it.
func (s *Server) Stop() {
	s.cancel()
	s.wg.Wait()
	if s.Audit != nil {
		// After the API and registry stopped, so their last requests
		// are in.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := s.Audit.Close(ctx); err != nil {
			s.log.Error("audit log not fully written", "err", err)
		}
		cancel()
	}
	if s.etcd != nil {
		s.etcd.Close()
	} else if s.cli != nil {
		s.cli.Close()
	}
	if s.dataLock != nil {
		s.dataLock.Close() // releases the flock
	}
}

// lockDataDir takes DATA/gantry.lock (flock, not waiting) for as long as
// the server runs; the kernel lets it go when the process ends, however
// it ends.
func lockDataDir(dir string) (*os.File, error) {
	f, err := TryLockDataDir(dir, true)
	if errors.Is(err, ErrDataDirInUse) {
		return nil, fmt.Errorf("another Gantry server uses the data directory %s (%s is locked): stop it first (Ctrl-C where it runs), or give this one another --data-dir", dir, filepath.Join(dir, "gantry.lock"))
	}
	return f, err
}

// ErrDataDirInUse is TryLockDataDir's error when a server holds the lock.
var ErrDataDirInUse = errors.New("a Gantry server holds the data directory's lock")

// TryLockDataDir takes the lock a server holds on its data directory,
// DATA/gantry.lock, without waiting: ErrDataDirInUse if another process
// holds it. Without create, a directory with no lock file (where no
// server ever ran) is an fs.ErrNotExist. Closing the file lets the lock
// go.
func TryLockDataDir(dir string, create bool) (*os.File, error) {
	path := filepath.Join(dir, "gantry.lock")
	flags := os.O_RDWR
	if create {
		flags |= os.O_CREATE
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data dir lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrDataDirInUse
		}
		return nil, fmt.Errorf("data dir lock %s: %w", path, err)
	}
	return f, nil
}

// bootstrap makes what a fresh cluster needs: the default namespace and a
// cluster admin with a token (written to DataDir/admin-token, 0600).
func (s *Server) bootstrap(ctx context.Context) error {
	ns := &v1.Namespace{TypeMeta: v1.TypeMeta{Kind: "Namespace"}, Metadata: v1.ObjectMeta{Name: v1.DefaultNamespace}}
	if err := s.Store.Create(ctx, ns); err != nil && !errors.Is(err, v1.ErrAlreadyExists) {
		return fmt.Errorf("create default namespace: %w", err)
	}
	path := filepath.Join(s.Config.DataDir, "admin-token")
	tok, err := auth.Bootstrap(ctx, s.Store, func(secret string) error {
		if err := pki.WriteFileAtomic(path, []byte(secret+"\n"), 0o600); err != nil {
			return fmt.Errorf("write admin token: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if tok != "" {
		s.AdminToken = tok
		return nil
	}
	if b, err := os.ReadFile(path); err == nil {
		s.AdminToken = string(trimNL(b))
	}
	return nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// NodeCredential returns a token that acts as the named node (for the
// in-process agent of `gantry up`). It is kept in the data directory and
// reused across restarts while it is valid.
func (s *Server) NodeCredential(ctx context.Context, node string) (string, error) {
	path := filepath.Join(s.Config.DataDir, "node-"+node+".token")
	if b, err := os.ReadFile(path); err == nil {
		tok := string(trimNL(b))
		a := &auth.Authenticator{Store: s.Store}
		if id, err := a.Authenticate(ctx, tok); err == nil && id.Node == node {
			return tok, nil
		}
	}
	_, tok, err := auth.CreateToken(ctx, s.Store, v1.TokenSpec{User: auth.NodeUser(node), Node: node, Description: "node credential of " + node})
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", err
	}
	return tok, nil
}

// instanceNetworks is the cluster CIDR (the API server's default when
// empty) as the DNS server's instance networks.
func instanceNetworks(clusterCIDR string) ([]netip.Prefix, error) {
	if clusterCIDR == "" {
		clusterCIDR = apiserver.DefaultConfig().ClusterCIDR
	}
	p, err := netip.ParsePrefix(clusterCIDR)
	if err != nil {
		return nil, fmt.Errorf("cluster CIDR %q: give a network such as 10.77.0.0/16: %w", clusterCIDR, err)
	}
	return []netip.Prefix{p.Masked()}, nil
}

// ServeDNSOn serves DNS on another address too, e.g. a node bridge's
// gateway for its containers. The address may not exist yet (the bridge
// appears with the first instance), so the sockets bind with IP_FREEBIND.
func (s *Server) ServeDNSOn(ctx context.Context, addr string) error {
	pc, ln, err := listenDNS(addr, true)
	if err != nil {
		return err
	}
	s.goRun(func() error { return s.DNS.Serve(ctx, pc, ln) })
	return nil
}

func listenDNS(addr string, freebind bool) (net.PacketConn, net.Listener, error) {
	lc := net.ListenConfig{}
	if freebind {
		lc.Control = func(network, address string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_IP, syscall.IP_FREEBIND, 1)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	pc, err := lc.ListenPacket(context.Background(), "udp", addr)
	if err != nil {
		return nil, nil, err
	}
	ln, err := lc.Listen(context.Background(), "tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		return nil, nil, err
	}
	return pc, ln, nil
}

// windowCollector reports the size of the metrics window.
type windowCollector struct{ w *metrics.Window }

func newWindowCollector(w *metrics.Window) prometheus.Collector { return windowCollector{w} }

var descSeries = prometheus.NewDesc("gantry_metrics_window_series", "Series held in the server's metrics window.", []string{"kind"}, nil)

func (c windowCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descSeries }

func (c windowCollector) Collect(ch chan<- prometheus.Metric) {
	i, n := c.w.Series()
	ch <- prometheus.MustNewConstMetric(descSeries, prometheus.GaugeValue, float64(i), "instance")
	ch <- prometheus.MustNewConstMetric(descSeries, prometheus.GaugeValue, float64(n), "node")
}

// advertised turns a listen address into one clients can use: a wildcard
// host becomes loopback.
// registryHost is the address image references name the registry by
// when --registry-host does not say: its listen address, with a wildcard
// host as this machine's outbound address when the API listens for other
// machines (a joined node must reach it: 127.0.0.1 would be the node
// itself), and as 127.0.0.1 otherwise.
func registryHost(regAddr, apiAddr string) string {
	host, port, err := net.SplitHostPort(regAddr)
	if err != nil || (host != "" && host != "0.0.0.0" && host != "::") {
		return advertised(regAddr)
	}
	if api, _, err := net.SplitHostPort(apiAddr); err == nil {
		if ip := net.ParseIP(api); api == "localhost" || (ip != nil && ip.IsLoopback()) {
			return advertised(regAddr)
		}
	}
	return net.JoinHostPort(outboundIP(), port)
}

func advertised(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// tlsListener wraps ln in TLS with a certificate of the cluster CA for
// this machine's names; clients may present node certificates.
func (s *Server) tlsListener(ln net.Listener, name string) (net.Listener, error) {
	sans := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil {
		sans = append(sans, h)
	}
	if host, _, err := net.SplitHostPort(ln.Addr().String()); err == nil && host != "0.0.0.0" && host != "::" {
		sans = append(sans, host)
	}
	sans = append(sans, outboundIP())
	sans = append(sans, s.Config.TLSNames...)
	cert, err := s.CA.ServingCert(pki.Dir(s.Config.DataDir), name, sans...)
	if err != nil {
		return nil, fmt.Errorf("%s certificate: %w", name, err)
	}
	cfg := pki.ServerTLS(s.CA.Pool(), cert.GetCertificate)
	cfg.NextProtos = []string{"h2", "http/1.1"}
	return tls.NewListener(ln, cfg), nil
}

// outboundIP guesses the address other machines reach this one at.
func outboundIP() string {
	conn, err := net.Dial("udp", "192.0.2.1:9")
	if err != nil {
		return "127.0.0.1"
	}
	defer conn.Close()
	return conn.LocalAddr().(*net.UDPAddr).IP.String()
}

// nodePortHost is the address node ports listen on: the host of the load
// balancer's address (ingressAddr) when it names one, so that a load
// balancer kept on loopback, behind a proxy, does not publish its node
// ports to the world; every address otherwise.
func nodePortHost(ingressAddr string) string {
	host, _, err := net.SplitHostPort(ingressAddr)
	if err != nil {
		return ""
	}
	return host
}

// startIngress runs the load balancer over the discovery snapshots.
func (s *Server) startIngress(ctx context.Context, codec *secrets.Codec) error {
	cfg := s.Config.Ingress
	cfg.HTTPAddr, cfg.HTTPSAddr = s.Config.IngressAddr, s.Config.IngressHTTPSAddr
	if cfg.TCPBindAddress == "" {
		cfg.TCPBindAddress = nodePortHost(cfg.HTTPAddr)
	}
	if cfg.TCPBindAddress == "" {
		s.log.Info("node ports of expose: tcp listen on every address")
	} else {
		s.log.Info("node ports of expose: tcp listen on one address", "addr", cfg.TCPBindAddress)
	}
	if cfg.AppsDomain == "" {
		cfg.AppsDomain = strings.TrimSuffix(s.Config.DNS.AppsDomain, ".")
	}
	cfg.Registerer = s.Metrics
	nps := newNodePortStatus(s.Store, func() []*v1.App { return s.Apps.List(nil) }, s.log.With("component", "ingress"))
	cfg.OnNodePorts = nps.set
	if cfg.HTTPSAddr != "" {
		cfg.Certificates = &routeCerts{src: s.Discovery, store: s.Store, codec: codec, ca: s.CA, dir: filepath.Join(pki.Dir(s.Config.DataDir), "routes")}
	}
	p, err := ingress.New(cfg, s.Discovery, s.log.With("component", "ingress"))
	if err != nil {
		return fmt.Errorf("ingress: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("ingress listener on %s: %w (pass --ingress-addr)", cfg.HTTPAddr, err)
	}
	var tln net.Listener
	if cfg.HTTPSAddr != "" {
		if tln, err = net.Listen("tcp", cfg.HTTPSAddr); err != nil {
			ln.Close()
			return fmt.Errorf("ingress HTTPS listener on %s: %w (pass --ingress-https-addr)", cfg.HTTPSAddr, err)
		}
	}
	s.Ingress = p
	s.goRun(func() error { return p.Serve(ctx, ln, tln) })
	s.goRun(func() error { return nps.run(ctx) })
	return nil
}

// etcdCollector reports the health of the store at every scrape.
type etcdCollector struct{ cli *clientv3.Client }

func newEtcdCollector(cli *clientv3.Client) prometheus.Collector { return etcdCollector{cli} }

var (
	descEtcdUp        = prometheus.NewDesc("gantry_etcd_up", "1 if every etcd endpoint answered a status request within a second.", nil, nil)
	descEtcdLeader    = prometheus.NewDesc("gantry_etcd_has_leader", "1 if the etcd member has a leader.", []string{"endpoint"}, nil)
	descEtcdDBSize    = prometheus.NewDesc("gantry_etcd_db_size_bytes", "Size of the etcd backend database.", []string{"endpoint"}, nil)
	descEtcdLatency   = prometheus.NewDesc("gantry_etcd_status_duration_seconds", "How long the status request to the endpoint took.", []string{"endpoint"}, nil)
	descEtcdRaftIndex = prometheus.NewDesc("gantry_etcd_raft_index", "The member's raft index.", []string{"endpoint"}, nil)
)

func (c etcdCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descEtcdUp, descEtcdLeader, descEtcdDBSize, descEtcdLatency, descEtcdRaftIndex} {
		ch <- d
	}
}

func (c etcdCollector) Collect(ch chan<- prometheus.Metric) {
	up := 1.0
	for _, ep := range c.cli.Endpoints() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		start := time.Now()
		st, err := c.cli.Status(ctx, ep)
		cancel()
		if err != nil {
			up = 0
			continue
		}
		leader := 0.0
		if st.Leader != 0 {
			leader = 1
		}
		ch <- prometheus.MustNewConstMetric(descEtcdLeader, prometheus.GaugeValue, leader, ep)
		ch <- prometheus.MustNewConstMetric(descEtcdDBSize, prometheus.GaugeValue, float64(st.DbSize), ep)
		ch <- prometheus.MustNewConstMetric(descEtcdLatency, prometheus.GaugeValue, time.Since(start).Seconds(), ep)
		ch <- prometheus.MustNewConstMetric(descEtcdRaftIndex, prometheus.GaugeValue, float64(st.RaftIndex), ep)
	}
	ch <- prometheus.MustNewConstMetric(descEtcdUp, prometheus.GaugeValue, up)
}
