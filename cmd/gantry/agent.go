package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
	"github.com/gantry-dev/gantry/internal/apiserver"
	"github.com/gantry-dev/gantry/internal/node"
	"github.com/gantry-dev/gantry/internal/pki"
)

// agentOptions are the flags of `gantry agent`.
type agentOptions struct {
	server     string
	join       string
	name       string
	dataDir    string
	listen     string
	metrics    string
	containerd string
	bridge     string
	cidr       string
	netnsDir   string
	domain     string
	sample     time.Duration
	logLevel   string
	labels     []string
}

func newAgentCmd() *cobra.Command {
	o := &agentOptions{}
	cmd := &cobra.Command{
		Use:   "agent --server URL --join TOKEN",
		Short: "Run this machine as a node of a Gantry cluster",
		Long: `Run the node agent: it joins the cluster with a join token (made with
` + "`gantry join-token create`" + ` on the server) once, receives a node certificate from the
cluster CA, and from then on runs the instances the scheduler places here.
The token carries a pin of the cluster CA, so nothing else needs copying.`,
		Example: "  gantry agent --server https://10.0.0.5:7443 --join gjt_… --name worker-1",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAgent(cmd, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.server, "server", "", "the API server's URL (https://HOST:7443)")
	f.StringVar(&o.join, "join", "", "a join token (needed the first time only)")
	f.StringVar(&o.name, "name", node.DefaultName(), "this node's name")
	f.StringVar(&o.dataDir, "data-dir", filepath.Join(defaultHome(), "agent"), "where the node keeps its state, images and logs")
	f.StringVar(&o.listen, "listen", ":7446", "where the agent serves logs, exec and /metrics to the server (TLS, server certificate required)")
	f.StringVar(&o.metrics, "metrics-addr", "127.0.0.1:7445", "where the agent serves /metrics over plain HTTP, for Prometheus (empty: nowhere)")
	f.StringVar(&o.containerd, "containerd-socket", "", "use this containerd instead of starting a private one")
	f.StringVar(&o.bridge, "bridge", "gantry0", "the Linux bridge instances attach to")
	f.StringVar(&o.cidr, "cluster-cidr", "10.77.0.0/16", "the cluster CIDR the server hands node subnets out of")
	f.StringVar(&o.netnsDir, "netns-dir", "/run/gantry/netns", "where instance network namespaces are mounted")
	f.StringVar(&o.domain, "cluster-domain", "gantry.internal", "DNS domain of service names")
	f.DurationVar(&o.sample, "sample-interval", 10*time.Second, "how often instance CPU and memory are sampled")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringSliceVar(&o.labels, "label", nil, "node labels KEY=VALUE (for placement constraints; not under node-restriction.gantry.dev/, which only a cluster admin sets)")
	return cmd
}

// identity is what a joined node keeps on disk.
type identity struct {
	Server        string `json:"server"`
	Node          string `json:"node"`
	CA            string `json:"ca"`
	Certificate   string `json:"certificate"`
	ServerCert    string `json:"serverCertificate"`
	Key           string `json:"key"`
	RegistryToken string `json:"registryToken"`
	Registry      string `json:"registry"`
}

// usableIdentity refuses to start on an identity the server would refuse,
// or that a --join given again says is of another cluster, saying what to
// do: the agent would otherwise retry its registration for ever.
func usableIdentity(n *nodeIdentity, join string, now time.Time) error {
	id := n.current()
	if join != "" {
		// Joined already, and given a join token again: fine for the
		// same cluster (a service's command line), but one for another
		// cluster (the server set up again, with a new CA) would be
		// ignored without a word.
		if jc, err := pki.ParseJoinToken(join); err == nil {
			if _, err := pki.CheckPin([]byte(id.CA), jc.CAPin); err != nil {
				return fmt.Errorf("this data dir has joined %s as node %s, and --join is a token of another cluster (its CA is not the one this node trusts; was the server set up again?): to join with it, remove %s (the node then starts afresh)", id.Server, id.Node, n.path)
			}
		}
	}
	if end := n.expires(); now.After(end) {
		return fmt.Errorf("the certificate of node %s ended on %s by this machine's clock (%s), so the server refuses it and it cannot be renewed: if the clock is right, join again (remove %s, then gantry agent --server %s --join TOKEN with a token from gantry join-token create; the node's instances are then placed again)", id.Node, end.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), n.path, id.Server)
	}
	return nil
}

// checkSampleInterval refuses a --sample-interval the sampler cannot use.
func checkSampleInterval(d time.Duration) error {
	if d < time.Second {
		return fmt.Errorf("--sample-interval %s: give a duration of 1s or more", d)
	}
	return nil
}

func runAgent(cmd *cobra.Command, o *agentOptions) error {
	log, err := newLogger(o.logLevel, "text")
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	labels, err := parseNodeLabels(o.labels)
	if err != nil {
		return err
	}
	if err := checkSampleInterval(o.sample); err != nil {
		return err
	}
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return err
	}
	// The pid file tells gantry down that this node is still served.
	pidPath := filepath.Join(o.dataDir, "gantry.pid")
	if pidAlive(pidPath) {
		return fmt.Errorf("another gantry agent runs on %s (pid file %s)", o.dataDir, pidPath)
	}
	if err := os.WriteFile(pidPath, []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o600); err != nil {
		return err
	}
	defer os.Remove(pidPath)
	idPath := filepath.Join(o.dataDir, "identity.json")
	id, err := loadIdentity(idPath)
	if errors.Is(err, fs.ErrNotExist) {
		if o.server == "" || o.join == "" {
			return errors.New("this node has not joined yet: give --server URL and --join TOKEN (from `gantry join-token create` on the server)")
		}
		id, err = joinCluster(ctx, o)
		if err != nil {
			return err
		}
		if err := writeIdentity(idPath, id); err != nil {
			return err
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "node %s joined %s\n", id.Node, id.Server)
	} else if err != nil {
		return err
	} else if o.server != "" && !sameServer(o.server, id.Server) {
		// Joined already: another server would be ignored, and the
		// node would go on serving the cluster it joined first. (The
		// same command line again, --join included, as a service
		// restarts it, is fine.)
		return fmt.Errorf("this data dir has joined %s as node %s, not %s: to join another cluster, use another --data-dir, or remove %s (the node then starts afresh)", id.Server, id.Node, o.server, idPath)
	}
	if id.Node != o.name && cmd.Flags().Changed("name") {
		return fmt.Errorf("this data dir belongs to node %s; use another --data-dir for node %s", id.Node, o.name)
	}
	nid, err := newNodeIdentity(idPath, id)
	if err != nil {
		return err
	}
	if err := usableIdentity(nid, o.join, time.Now()); err != nil {
		return err
	}
	// A connection the network dropped silently is found within a
	// heartbeat or two (the node lease lasts 6 s), not by TCP's timeout.
	api, err := client.New(client.Config{Server: id.Server, CA: []byte(id.CA), GetClientCertificate: nid.clientCert, UserAgent: "gantry-agent/" + version,
		HealthCheck: 2 * time.Second})
	if err != nil {
		return err
	}
	go nid.keepRenewed(ctx, api, log)
	agentURL := ""
	host, port, _ := net.SplitHostPort(o.listen)
	if host == "" {
		host = node.OutboundIP()
	}
	if port != "" {
		agentURL = "https://" + net.JoinHostPort(host, port)
	}
	creds := func(h string) (string, string) {
		if cur := nid.current(); h == cur.Registry {
			return "node", cur.RegistryToken
		}
		return "", ""
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if self, err = filepath.EvalSymlinks(self); err != nil {
		return err
	}
	nd, err := node.Start(ctx, node.Config{
		Name: id.Node, DataDir: o.dataDir, ContainerdSocket: o.containerd, LogDriver: logDriverArgv(ctx, self, log),
		BridgeName: o.bridge, ClusterCIDR: o.cidr, NetNSDir: o.netnsDir, Labels: labels, Address: node.OutboundIP(),
		AgentURL: agentURL, Credentials: creds, CAPEM: []byte(id.CA), ClusterDomain: o.domain, SampleInterval: o.sample,
	}, api, log)
	if err != nil {
		return err
	}
	defer nd.Stop()
	if o.listen != "" {
		if err := serveAgent(ctx, o.listen, nid, nd); err != nil {
			return err
		}
	}
	if _, err := serveNodeMetrics(ctx, o.metrics, "--metrics-addr", nd.Registry, log); err != nil {
		if cmd.Flags().Changed("metrics-addr") {
			return err // an address asked for that cannot be had
		}
		// The node's work does not depend on it: run without, and say
		// so (a gantry up on the same machine holds the default port).
		log.Warn("serving no metrics for Prometheus", "err", err)
	}
	log.Info("agent running", "node", id.Node, "server", id.Server, "listen", o.listen)
	select {
	case <-ctx.Done():
		return nil
	case err := <-nd.Err():
		return err
	}
}

func loadIdentity(path string) (*identity, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var id identity
	if err := json.Unmarshal(b, &id); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &id, nil
}

// joinCluster trades the join token for a node certificate. The server is
// trusted through the CA pin inside the token.
func joinCluster(ctx context.Context, o *agentOptions) (*identity, error) {
	jc, err := pki.ParseJoinToken(o.join)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(o.server)
	if err != nil || u.Scheme != "https" {
		return nil, fmt.Errorf("--server %q must be an https URL", o.server)
	}
	key, err := pki.NewKey()
	if err != nil {
		return nil, err
	}
	csr, err := pki.NodeCSR(o.name, key)
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: pki.PinnedClientTLS(jc.CAPin, u.Hostname())}}
	body, _ := json.Marshal(apiserver.JoinRequest{Node: o.name, Token: o.join, CSR: string(csr)})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(o.server, "/")+"/api/v1/join", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("join %s: %w", o.server, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var st v1.Status
		json.NewDecoder(resp.Body).Decode(&st)
		return nil, fmt.Errorf("join %s: %s (HTTP %d)", o.server, st.Message, resp.StatusCode)
	}
	var jr apiserver.JoinResponse
	if err := json.NewDecoder(resp.Body).Decode(&jr); err != nil {
		return nil, err
	}
	if _, err := pki.CheckPin([]byte(jr.CA), jc.CAPin); err != nil {
		return nil, fmt.Errorf("the server's CA does not match the join token: %w", err)
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		return nil, err
	}
	return &identity{Server: o.server, Node: o.name, CA: jr.CA, Certificate: jr.Certificate, ServerCert: jr.ServerCertificate,
		Key: string(keyPEM), RegistryToken: jr.RegistryToken, Registry: jr.Registry}, nil
}

// serveAgent serves logs, exec and /metrics to the API server only: TLS
// with the node's server certificate, and the server's client certificate
// required.
func serveAgent(ctx context.Context, addr string, nid *nodeIdentity, nd *node.Node) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(nid.current().CA))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("agent listener on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(nd.Registry, promhttp.HandlerOpts{}))
	mux.Handle("/", nd.Agent.Handler())
	guard := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !pki.IsServer(r.TLS) {
			http.Error(w, "only the Gantry API server may call an agent", http.StatusForbidden)
			return
		}
		mux.ServeHTTP(w, r)
	})
	tl := tls.NewListener(ln, &tls.Config{GetCertificate: nid.listenerCert, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, MinVersion: tls.VersionTLS12})
	hs := &http.Server{Handler: guard, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(tl)
	go func() { <-ctx.Done(); hs.Close() }()
	return nil
}

func newJoinTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "join-token", Short: "Manage the tokens agents join the cluster with"}
	var ttl time.Duration
	var desc string
	create := &cobra.Command{
		Use:   "create [--ttl 24h]",
		Short: "Make a join token; give it to `gantry agent --join` on the new node",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if ttl <= 0 {
				// Sent as no expiry, it would get the server's default
				// of 24h without a word.
				return fmt.Errorf("--ttl %s: give a lifetime such as 1h or 24h (the default)", ttl)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			// The lifetime, not an end: the server counts it on its own
			// clock, whatever this machine's says.
			body := &v1.JoinToken{TypeMeta: v1.TypeMeta{Kind: "JoinToken"}, Spec: v1.JoinTokenSpec{Description: desc}}
			var out apiserver.CreatedJoinToken
			hdr, err := c.Do(cmd.Context(), "POST", "/api/v1/jointokens", url.Values{"ttl": {ttl.String()}}, body, &out)
			if err != nil {
				return err
			}
			// A server from before ?ttl= gives its default instead: said,
			// judged on the server's own clock (its Date).
			if at, err := http.ParseTime(hdr.Get("Date")); err == nil {
				if off := out.Spec.Expires.Sub(at) - ttl; off > 2*time.Minute || off < -2*time.Minute {
					fmt.Fprintf(cmd.ErrOrStderr(), "Warning: the server did not take --ttl %s (a server older than this CLI?): the token lasts until %s; remove it with gantry join-token rm %s if that is too long\n",
						ttl, out.Spec.Expires.Local().Format(time.RFC3339), out.Metadata.Name)
				}
			}
			server, note := joinServer(c.Server(), node.OutboundIP())
			fmt.Fprintf(cmd.ErrOrStderr(), "join token %s, valid until %s; on the new node run:\n  gantry agent --server %s --join <token>\n%s", out.Metadata.Name, out.Spec.Expires.Local().Format(time.RFC3339), server, note)
			fmt.Fprintln(cmd.OutOrStdout(), out.Token)
			return nil
		},
	}
	create.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token can be used")
	create.Flags().StringVar(&desc, "description", "", "what the token is for")
	list := &listOutput{}
	ls := &cobra.Command{
		Use: "ls", Short: "List join tokens", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := list.check(); err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			objs, _, err := c.List(cmd.Context(), "JoinToken", "", client.ListOptions{})
			if err != nil {
				return err
			}
			return list.print(cmd, "JoinToken", objs, func() {
				rows := [][]string{{"ID", "EXPIRES", "DESCRIPTION"}}
				for _, o := range objs {
					t := o.(*v1.JoinToken)
					rows = append(rows, []string{t.Metadata.Name, t.Spec.Expires.Local().Format(time.RFC3339), t.Spec.Description})
				}
				printRows(cmd.OutOrStdout(), rows)
			})
		},
	}
	list.bind(ls)
	rm := &cobra.Command{
		Use: "rm ID", Short: "Delete a join token", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if _, err := c.Delete(cmd.Context(), "JoinToken", "", args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "jointoken/%s deleted\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, ls, rm)
	return cmd
}

// parseNodeLabels reads --label KEY=VALUE flags, checked as the server
// checks them, before the node joins or starts.
func parseNodeLabels(flags []string) (map[string]string, error) {
	labels := map[string]string{}
	for _, l := range flags {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return nil, fmt.Errorf("--label %q: give KEY=VALUE (an empty value is KEY=)", l)
		}
		if strings.HasPrefix(k, v1.LabelNodeRestrictionPrefix) {
			return nil, fmt.Errorf("--label %s: %s* labels are set by a cluster admin on the Node (gantry apply), never by the node itself", k, v1.LabelNodeRestrictionPrefix)
		}
		labels[k] = v
	}
	if errs := v1.ValidateLabels("--label", labels); len(errs) > 0 {
		return nil, errs
	}
	return labels, nil
}

// joinServer is the server address to give a new node: the CLI's own,
// unless that is this machine's loopback (gantry up and gantry server
// write one), which on the new node would name the new node itself; then
// this machine's outbound address, with a note saying so.
func joinServer(server, outbound string) (string, string) {
	u, err := url.Parse(server)
	if err != nil {
		return server, ""
	}
	h := u.Hostname()
	if ip := net.ParseIP(h); h != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return server, ""
	}
	what := outbound + " is this machine's outbound address, in place of the loopback one this CLI uses"
	if ip := net.ParseIP(outbound); ip == nil || ip.IsLoopback() {
		outbound, what = "SERVER-ADDRESS", "SERVER-ADDRESS: an address of the server the new node can reach"
	}
	note := "  (" + what + "; the server must listen on it, e.g. gantry server --api-addr 0.0.0.0:7443)\n"
	if port := u.Port(); port != "" {
		u.Host = net.JoinHostPort(outbound, port)
	} else if ip := net.ParseIP(outbound); ip != nil && ip.To4() == nil {
		u.Host = "[" + outbound + "]"
	} else {
		u.Host = outbound
	}
	return u.String(), note
}
