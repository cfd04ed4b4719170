// Package e2e runs Gantry end to end: each test starts the real gantry
// binary (`gantry up`) with its own data directory, containerd, bridge,
// subnet and ports, drives it through the CLI and the Go client, and
// removes everything afterwards with `gantry down --purge`.
//
// The tests need root, containerd, runc and the CNI plugins. Outside CI
// they skip when those are missing; with CI=true a missing prerequisite
// fails the run instead, so that CI can never pass without them.
package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"sigs.k8s.io/yaml"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
	"github.com/gantry-dev/gantry/internal/clusterslot"
	"github.com/gantry-dev/gantry/internal/image"
	"github.com/gantry-dev/gantry/internal/node"
	"github.com/gantry-dev/gantry/internal/runtime"
)

var (
	gantryBin    string // built once by TestMain
	webappBin    string
	webapp386Bin string // the same, built for i386
	skipWhy      string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	var missing []string
	if os.Getuid() != 0 {
		missing = append(missing, "root")
	}
	for _, bin := range []string{"containerd", "runc", "iptables", "containerd-shim-runc-v2"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		missing = append(missing, "containernetworking-plugins")
	}
	if _, err := os.Stat(image.BusyboxPath); err != nil {
		missing = append(missing, "busybox-static")
	}
	if len(missing) > 0 {
		skipWhy = "end-to-end tests need " + strings.Join(missing, ", ") + " (run scripts/setup.sh as root)"
		if os.Getenv("CI") == "true" {
			fmt.Fprintln(os.Stderr, "FAIL: "+skipWhy+"; CI=true forbids skipping them")
			return 1
		}
		fmt.Fprintln(os.Stderr, "skipping: "+skipWhy)
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "gantry-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	gantryBin = filepath.Join(dir, "gantry")
	webappBin = filepath.Join(dir, "webapp")
	webapp386Bin = filepath.Join(dir, "webapp386")
	// gantry-logdriver next to gantry, as make build puts it.
	for _, b := range []struct{ out, pkg, goarch string }{
		{gantryBin, "../cmd/gantry", ""},
		{filepath.Join(dir, "gantry-logdriver"), "../cmd/gantry-logdriver", ""},
		{webappBin, "./testdata/webapp", ""},
		{webapp386Bin, "./testdata/webapp", "386"}, // a 32-bit program
	} {
		cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b.goarch != "" {
			cmd.Env = append(cmd.Env, "GOARCH="+b.goarch)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", b.pkg, err, out)
			return 1
		}
	}
	return m.Run()
}

func requireE2E(t *testing.T) {
	t.Helper()
	if skipWhy != "" {
		t.Skip(skipWhy)
	}
}

// clusterSeq gives each cluster of this run its own bridge and subnet.
var clusterSeq atomic.Int32

// freeClusterNumber picks a number for a cluster's bridge (gteN) and
// subnet (10.(100+N).0.0/16) that no other cluster on this machine uses,
// even one of another test process, for the life of the test.
func freeClusterNumber(t *testing.T) int {
	t.Helper()
	n, release, err := clusterslot.Claim(int(clusterSeq.Add(1)) + os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	return n
}

// Cluster is one `gantry up` under test.
type Cluster struct {
	t        *testing.T
	Dir      string
	Config   string
	APIAddr  string
	RegAddr  string
	DNSAddr  string
	HTTPAddr string
	Bridge   string
	CIDR     string
	Node     string
	Client   *client.Client
	Token    string
	CA       []byte
	args     []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *bytes.Buffer
}

// ClusterOptions adjust a cluster.
type ClusterOptions struct {
	ExtraArgs []string
}

func freePort(t *testing.T) string {
	t.Helper()
	addr, err := clusterslot.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// clusterPort returns port i (0-7) of cluster number n (clusterslot.Port).
func clusterPort(t *testing.T, n, i int) string {
	t.Helper()
	addr, err := clusterslot.Port(n, i)
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// StartCluster starts a gantry up and waits until its node is Ready.
func StartCluster(t *testing.T, opts ClusterOptions) *Cluster {
	t.Helper()
	requireE2E(t)
	n := freeClusterNumber(t)
	dir, err := os.MkdirTemp("", "gantry-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{
		t: t, Dir: dir, Config: filepath.Join(dir, "config"),
		APIAddr: clusterPort(t, n, 0), RegAddr: clusterPort(t, n, 1), DNSAddr: clusterPort(t, n, 2), HTTPAddr: clusterPort(t, n, 3),
		Bridge: fmt.Sprintf("gte%d", n), CIDR: fmt.Sprintf("10.%d.0.0/16", 100+n),
		Node: fmt.Sprintf("e2e-%d", n),
	}
	c.args = append([]string{"up", "--data-dir", dir, "--api-addr", c.APIAddr,
		"--bridge", c.Bridge, "--cluster-cidr", c.CIDR, "--netns-dir", filepath.Join(dir, "netns"),
		"--write-config", c.Config, "--node-name", c.Node, "--log-level", "debug"}, clusterFeatureArgs(c)...)
	// Later flags win: a test's own flags override the defaults above.
	c.args = append(c.args, opts.ExtraArgs...)
	t.Cleanup(c.destroy)
	c.start()
	c.waitReady()
	return c
}

func (c *Cluster) start() {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	cmd := exec.Command(gantryBin, c.args...)
	c.log = &bytes.Buffer{}
	logf, err := os.OpenFile(filepath.Join(c.Dir, "gantry-up.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	c.cmd, c.done = cmd, done
}

func (c *Cluster) waitReady() {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-c.done:
			c.t.Fatalf("gantry up exited early:\n%s", c.Logs())
		default:
		}
		if b, err := os.ReadFile(c.Config); err == nil {
			var cfg struct{ Server, Token, CA string }
			if yaml.Unmarshal(b, &cfg) == nil && cfg.Token != "" {
				cl, err := client.New(client.Config{Server: cfg.Server, Token: cfg.Token, CA: []byte(cfg.CA)})
				if err == nil {
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					n, err := client.Get[*v1.Node](ctx, cl, "", c.Node)
					cancel()
					if err == nil && n.Status.Ready {
						c.Client, c.Token, c.CA = cl, cfg.Token, []byte(cfg.CA)
						return
					}
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("gantry up did not get ready in 60s:\n%s", c.Logs())
}

// Logs returns the tail of gantry up's output.
func (c *Cluster) Logs() string {
	b, _ := os.ReadFile(filepath.Join(c.Dir, "gantry-up.log"))
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}

// Stop stops gantry up gracefully.
func (c *Cluster) Stop() {
	c.mu.Lock()
	cmd, done := c.cmd, c.done
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// Kill9 kills gantry up (server and agent) without a chance to clean up.
func (c *Cluster) Kill9() {
	c.mu.Lock()
	cmd, done := c.cmd, c.done
	c.mu.Unlock()
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// Restart starts gantry up again on the same data.
func (c *Cluster) Restart() {
	c.t.Helper()
	c.start()
	c.waitReady()
}

func (c *Cluster) destroy() {
	c.Stop()
	if c.t.Failed() {
		c.t.Logf("gantry up log of %s:\n%s", c.Dir, c.Logs())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, gantryBin, "down", "--data-dir", c.Dir, "--purge").CombinedOutput()
	if err != nil {
		c.t.Errorf("gantry down: %v\n%s", err, out)
	}
	// Every shim of the cluster's containerd must be gone with it, even
	// one whose task containerd was creating when the cluster stopped.
	// A shim killed or shut down a moment ago may take that long to exit.
	sock := runtime.SocketPath(filepath.Join(c.Dir, "node", "containerd"))
	var left []int
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if left, err = node.Shims(sock); err != nil {
			c.t.Errorf("list containerd shims: %v", err)
			return
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, pid := range left {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		c.t.Errorf("gantry down left a containerd shim running: pid %d: %s", pid, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
	}
}

// Gantry runs the CLI against the cluster and returns its output and exit
// code.
func (c *Cluster) Gantry(stdin string, args ...string) (stdout, stderr string, code int) {
	c.t.Helper()
	cmd := exec.Command(gantryBin, args...)
	cmd.Env = append(os.Environ(), "GANTRY_CONFIG="+c.Config)
	cmd.Stdin = strings.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return o.String(), e.String(), ee.ExitCode()
	}
	if err != nil {
		c.t.Fatalf("run gantry %v: %v", args, err)
	}
	return o.String(), e.String(), 0
}

// MustGantry runs the CLI and fails the test on a non-zero exit.
func (c *Cluster) MustGantry(stdin string, args ...string) string {
	c.t.Helper()
	out, errOut, code := c.Gantry(stdin, args...)
	if code != 0 {
		c.t.Fatalf("gantry %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// Push pushes an image to the cluster registry as repo:tag and returns
// its reference (REGISTRY/repo@digest form is in the second value).
func (c *Cluster) Push(img ggcr.Image, repoTag string) (string, string) {
	c.t.Helper()
	ref := c.RegAddr + "/" + repoTag
	d, err := image.Push(context.Background(), img, ref, c.ImageAuth(), nil)
	if err != nil {
		c.t.Fatalf("push %s: %v", ref, err)
	}
	repo, _, _ := strings.Cut(ref, ":"+strings.SplitN(repoTag, ":", 2)[len(strings.SplitN(repoTag, ":", 2))-1])
	return ref, repo + "@" + d.String()
}

// ImageAuth logs in to the cluster registry as the admin, trusting the
// cluster CA.
func (c *Cluster) ImageAuth() image.Auth {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.CA)
	return image.Auth{Token: c.Token, RootCAs: pool}
}

// WebappImage packs the test web app as an image.
func WebappImage(t *testing.T) ggcr.Image { return webappImageOf(t, webappBin) }

// Webapp386Image packs the test web app built for i386 in an image whose
// config says amd64: a 64-bit image that runs a 32-bit program.
func Webapp386Image(t *testing.T) ggcr.Image { return webappImageOf(t, webapp386Bin) }

func webappImageOf(t *testing.T, bin string) ggcr.Image {
	t.Helper()
	img, err := image.GoBinary(bin, "webapp", image.Config{ExposedPorts: []string{"8080/tcp"}})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// BusyboxImage is the seed image.
func BusyboxImage(t *testing.T) ggcr.Image {
	t.Helper()
	img, err := image.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// Eventually polls cond until it is true or the timeout passes.
func Eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", timeout, what)
}

// Instances lists an app's instances.
func (c *Cluster) Instances(ns, app string) []*v1.Instance {
	c.t.Helper()
	l, _, err := client.List[*v1.Instance](context.Background(), c.Client, ns, client.ListOptions{Selector: v1.LabelApp + "=" + app})
	if err != nil {
		c.t.Fatal(err)
	}
	return l
}

// HTTPGet fetches a URL with a short timeout.
func HTTPGet(url string, host string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	if host != "" {
		req.Host = host
	}
	cl := &http.Client{Timeout: 3 * time.Second}
	resp, err := cl.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func isCI() bool { return os.Getenv("CI") == "true" }

// ImageAuthTLS is a TLS config that trusts the cluster CA.
func (c *Cluster) ImageAuthTLS() *tls.Config {
	return &tls.Config{RootCAs: c.ImageAuth().RootCAs, MinVersion: tls.VersionTLS12}
}

// emptyIndex is an empty OCI image index, to start a layout.
func emptyIndex() ggcr.ImageIndex { return empty.Index }
