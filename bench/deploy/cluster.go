package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"sigs.k8s.io/yaml"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
	"github.com/gantry-dev/gantry/internal/clusterslot"
	"github.com/gantry-dev/gantry/internal/image"
	"github.com/gantry-dev/gantry/internal/runtime"
)

// cluster is one `gantry up` started by the benchmark, set up the way the
// e2e harness sets up its clusters: its own data directory, bridge,
// subnet, ports and network-namespace directory, so that it collides with
// no other cluster on the machine (e2e tests of other engineers included).
type cluster struct {
	bin     string
	dir     string
	release func() // gives back the cluster number
	apiAddr string
	regAddr string
	dnsAddr string
	bridge  string
	cidr    string
	node    string
	args    []string
	noAgent bool // server only: ready once the API answers
	// debugAddr serves gantry up's pprof profiles, when asked for.
	debugAddr string

	cmd  *exec.Cmd
	done chan struct{}

	api   *client.Client
	token string
	ca    []byte
}

// startCluster starts gantry up and waits until its node is Ready. On an
// error the caller must still call destroy (it is safe on a half-started
// cluster).
func startCluster(ctx context.Context, bin string, logLevel string, extra ...string) (*cluster, error) {
	n, release, err := clusterslot.Claim(os.Getpid())
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "gantry-bench-deploy-")
	if err != nil {
		release()
		return nil, err
	}
	c := &cluster{
		bin: bin, dir: dir, release: release,
		bridge: fmt.Sprintf("gte%d", n), cidr: fmt.Sprintf("10.%d.0.0/16", 100+n),
		node: fmt.Sprintf("bench-%d", n), noAgent: slices.Contains(extra, "--no-agent"),
	}
	for i, p := range []*string{&c.apiAddr, &c.regAddr, &c.dnsAddr} {
		if *p, err = clusterslot.Port(n, i); err != nil {
			return c, err
		}
	}
	if i := slices.Index(extra, "--debug-addr"); i >= 0 && i+1 < len(extra) {
		c.debugAddr = extra[i+1]
	}
	c.args = append([]string{"up", "--data-dir", dir, "--api-addr", c.apiAddr,
		"--bridge", c.bridge, "--cluster-cidr", c.cidr, "--netns-dir", filepath.Join(dir, "netns"),
		"--write-config", filepath.Join(dir, "config"), "--node-name", c.node, "--log-level", logLevel,
		"--dns-addr", c.dnsAddr, "--registry-addr", c.regAddr, "--agent-metrics-addr", "127.0.0.1:0"}, extra...)
	logf, err := os.OpenFile(c.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return c, err
	}
	cmd := exec.Command(bin, c.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a Ctrl-C of the benchmark must reach the
	// benchmark only, which then stops gantry up in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return c, err
	}
	c.cmd, c.done = cmd, make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(c.done) }()
	return c, c.waitReady(ctx)
}

func (c *cluster) logPath() string { return filepath.Join(c.dir, "gantry-up.log") }

// pid is gantry up's process id: server and agent run in it.
func (c *cluster) pid() int { return c.cmd.Process.Pid }

// containerdSocket is the node's private containerd.
func (c *cluster) containerdSocket() string {
	return runtime.SocketPath(filepath.Join(c.dir, "node", "containerd"))
}

func (c *cluster) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-c.done:
			return fmt.Errorf("gantry up exited early; see %s", c.logPath())
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if b, err := os.ReadFile(filepath.Join(c.dir, "config")); err == nil {
			var cfg struct{ Server, Token, CA string }
			if yaml.Unmarshal(b, &cfg) == nil && cfg.Token != "" {
				cl, err := client.New(client.Config{Server: cfg.Server, Token: cfg.Token, CA: []byte(cfg.CA)})
				if err == nil {
					gctx, cancel := context.WithTimeout(ctx, 2*time.Second)
					n, err := client.Get[*v1.Node](gctx, cl, "", c.node)
					if c.noAgent {
						_, _, err = client.List[*v1.Node](gctx, cl, "", client.ListOptions{})
					}
					cancel()
					if err == nil && (c.noAgent || n.Status.Ready) {
						c.api, c.token, c.ca = cl, cfg.Token, []byte(cfg.CA)
						return nil
					}
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("gantry up did not get ready in 90s; see %s", c.logPath())
}

// pushBusybox pushes the busybox seed image to the cluster registry as
// repoTag, as the admin.
func (c *cluster) pushBusybox(ctx context.Context, repoTag string) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.ca)
	bb, err := image.Busybox()
	if err != nil {
		return err
	}
	_, err = image.Push(ctx, bb, c.regAddr+"/"+repoTag, image.Auth{Token: c.token, RootCAs: pool}, nil)
	return err
}

// stop stops gantry up gracefully (SIGINT), killing it after 30 s.
func (c *cluster) stop() {
	if c.cmd == nil {
		return
	}
	c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		c.cmd.Process.Kill()
		<-c.done
	}
}

// destroy stops gantry up and removes everything it left, with
// `gantry down --purge`, then frees the cluster number. It runs even when
// the benchmark failed or was interrupted.
func (c *cluster) destroy() error {
	if c == nil {
		return nil
	}
	defer c.release()
	c.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, c.bin, "down", "--data-dir", c.dir, "--purge").CombinedOutput()
	if err != nil {
		return fmt.Errorf("gantry down --data-dir %s --purge: %w\n%s", c.dir, err, out)
	}
	return nil
}
