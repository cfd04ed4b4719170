package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
)

// Helpers of the governance tests (issue 6): raw API and registry calls
// with any credential, users with roles, and direct access to the
// embedded etcd.

// tlsConfig trusts the cluster CA only, optionally presenting a client
// certificate (a node's).
func (c *Cluster) tlsConfig(cert *tls.Certificate) *tls.Config {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(c.CA) {
		c.t.Fatal("the cluster CA in the CLI config is not PEM")
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg
}

// httpClient is an HTTPS client for the cluster's API and registry.
func (c *Cluster) httpClient(cert *tls.Certificate) *http.Client {
	return &http.Client{
		Timeout:   15 * time.Second,
		Transport: &http.Transport{TLSClientConfig: c.tlsConfig(cert), DisableKeepAlives: true},
		// Registry uploads answer with redirects to their upload URL;
		// the tests look at the first answer.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// reply is what a raw call got back: the status and the error message
// of a v1.Status body (or the raw body when it is not one).
type reply struct {
	Code   int
	Msg    string
	Body   []byte
	Header http.Header
}

func (r reply) String() string {
	m := r.Msg
	if len(m) > 300 {
		m = m[:300] + "…"
	}
	return fmt.Sprintf("%d %s", r.Code, m)
}

// rawCall sends one request to base+path with the given credential
// ("" sends none) and body (nil, []byte or a value to encode as JSON).
func (c *Cluster) rawCall(hc *http.Client, base, method, path, token string, body any, hdr map[string]string) reply {
	c.t.Helper()
	var rd io.Reader
	ctype := ""
	switch b := body.(type) {
	case nil:
	case []byte:
		rd, ctype = bytes.NewReader(b), "application/octet-stream"
	default:
		j, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		rd, ctype = bytes.NewReader(j), "application/json"
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return reply{Code: -1, Msg: err.Error()}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	r := reply{Code: resp.StatusCode, Body: b, Header: resp.Header, Msg: strings.TrimSpace(string(b))}
	var st v1.Status
	if json.Unmarshal(b, &st) == nil && st.Message != "" {
		r.Msg = st.Message
	}
	return r
}

// apiCall calls the API server as the holder of token.
func (c *Cluster) apiCall(method, path, token string, body any) reply {
	c.t.Helper()
	return c.rawCall(c.httpClient(nil), c.Client.Server(), method, path, token, body, nil)
}

// regCall calls the registry with a platform token as the bearer.
func (c *Cluster) regCall(method, path, token string, body any, hdr map[string]string) reply {
	c.t.Helper()
	return c.rawCall(c.httpClient(nil), "https://"+c.RegAddr, method, path, token, body, hdr)
}

// manifestAccept is what a registry client accepts for a manifest.
var manifestAccept = map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json"}

// createUser makes a user with a token, bound to role in ns when role is
// not empty, through the CLI, and returns the token.
func (c *Cluster) createUser(name, role, ns string) string {
	c.t.Helper()
	args := []string{"user", "create", name, "--issue-token"}
	if role != "" {
		args = append(args, "--role", role, "-n", ns)
	}
	out := c.MustGantry("", args...)
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "gtk_") {
			return strings.TrimSpace(l)
		}
	}
	c.t.Fatalf("gantry user create printed no token:\n%s", out)
	return ""
}

// etcdClient connects to the cluster's embedded etcd through its unix socket.
func (c *Cluster) etcdClient() *clientv3.Client {
	c.t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{"unix://" + filepath.Join(c.Dir, "etcd", "client.sock")},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

// filesContaining lists the regular files under dir that contain any of
// needles.
func filesContaining(t *testing.T, dir string, needles ...[]byte) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil // a file that vanished or is not readable (socket races)
		}
		for _, n := range needles {
			if bytes.Contains(b, n) {
				hits = append(hits, p)
				break
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

// sleeperApp is a manifest of a container that just sleeps.
func sleeperApp(name, ns string, replicas int, extra string) string {
	return fmt.Sprintf(`kind: App
name: %s
namespace: %s
image: library/busybox:latest
command: ["/bin/sh", "-c", "exec sleep 100000"]
replicas: %d
resources: {cpu: 10m, memory: 16Mi}
stopGracePeriod: 1s
strategy: {drainDelay: 0s}
%s`, name, ns, replicas, extra)
}

// execIn runs a command in an instance through the CLI as the cluster
// admin and returns its standard output.
func (c *Cluster) execIn(ns, inst string, cmd ...string) string {
	c.t.Helper()
	return c.MustGantry("", append([]string{"exec", "-n", ns, inst, "--"}, cmd...)...)
}

// instanceOf waits for the single ready instance of an app.
func (c *Cluster) instanceOf(ns, app string) *v1.Instance {
	c.t.Helper()
	return c.waitRunning(ns, app, 1, 60*time.Second)[0]
}

// clientAs is a Go client acting with another token.
func (c *Cluster) clientAs(token string) *client.Client {
	c.t.Helper()
	cl, err := client.New(client.Config{Server: c.Client.Server(), Token: token, CA: c.CA})
	if err != nil {
		c.t.Fatal(err)
	}
	return cl
}

// timeoutCtx is a context for one call.
func timeoutCtx(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
