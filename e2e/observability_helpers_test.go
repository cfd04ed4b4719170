package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// pid returns the process id of the running gantry up.
func (c *Cluster) pid() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cmd.Process.Pid
}

// agentMetricsAddr finds where this cluster's agent serves /metrics. The
// harness passes --agent-metrics-addr 127.0.0.1:0 (after ExtraArgs, so a
// test cannot choose the port), and gantry up does not print the port it
// got; so we look at the TCP sockets gantry up listens on and ask each
// plain-HTTP one for the agent's own process metrics.
func (c *Cluster) agentMetricsAddr(t *testing.T) string {
	t.Helper()
	known := map[string]bool{c.APIAddr: true, c.RegAddr: true, c.DNSAddr: true, c.HTTPAddr: true}
	var found string
	Eventually(t, 15*time.Second, "the agent's metrics listener", func() bool {
		for _, addr := range listeningAddrs(t, c.pid()) {
			if known[addr] || !strings.HasPrefix(addr, "127.0.0.1:") {
				continue
			}
			code, body, err := HTTPGet("http://"+addr+"/metrics", "")
			if err == nil && code == 200 && strings.Contains(body, "gantry_agent_process_start_time_seconds") {
				found = addr
				return true
			}
		}
		return false
	})
	return found
}

// listeningAddrs lists the IPv4 TCP addresses a process listens on, from
// its socket file descriptors and /proc/PID/net/tcp.
func listeningAddrs(t *testing.T, pid int) []string {
	t.Helper()
	inodes := map[string]bool{}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		// sl local rem st tx:rx tr:when retrnsmt uid timeout inode
		if len(f) < 10 || f[3] != "0A" || !inodes[f[9]] {
			continue
		}
		hexIP, hexPort, _ := strings.Cut(f[1], ":")
		ip, err1 := strconv.ParseUint(hexIP, 16, 32)
		port, err2 := strconv.ParseUint(hexPort, 16, 16)
		if err1 != nil || err2 != nil {
			continue
		}
		// The kernel prints the address as a little-endian word.
		a := net.IPv4(byte(ip), byte(ip>>8), byte(ip>>16), byte(ip>>24))
		out = append(out, net.JoinHostPort(a.String(), strconv.Itoa(int(port))))
	}
	return out
}

// apiHTTP is an HTTP client that trusts the cluster CA.
func (c *Cluster) apiHTTP() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.CA)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// serverGet fetches a path of the API server over HTTPS with the given
// bearer token (none when empty).
func (c *Cluster) serverGet(t *testing.T, path, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "https://"+c.APIAddr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.apiHTTP().Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// promValue returns the sum of the samples of a metric whose label set
// contains every given label (name="value" pairs), from Prometheus text.
func promValue(text, metric string, labels ...string) float64 {
	var sum float64
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, metric+"{") && !strings.HasPrefix(line, metric+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(line, l) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// promtoolCheck runs `promtool check metrics` on an exposition and fails
// the test with promtool's findings.
func promtoolCheck(t *testing.T, what, exposition string) {
	t.Helper()
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(exposition)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool check metrics on %s: %v\n%s", what, err, out)
		return
	}
	t.Logf("promtool check metrics on %s: ok (%d bytes, %d families)", what, len(exposition), strings.Count(exposition, "# TYPE "))
}

// promServer is a real Prometheus server started for a test.
type promServer struct {
	URL string
}

// startPrometheus runs Debian's prometheus with the given configuration,
// storing its data under a temporary directory, and waits until it is
// ready.
func startPrometheus(t *testing.T, dir, config string) *promServer {
	t.Helper()
	if _, err := exec.LookPath("prometheus"); err != nil {
		t.Fatalf("prometheus not installed (Debian package prometheus): %v", err)
	}
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("prometheus", "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=info")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			t.Logf("prometheus log:\n%s", b)
		}
	})
	p := &promServer{URL: "http://" + addr}
	Eventually(t, 30*time.Second, "prometheus ready", func() bool {
		select {
		case <-done:
			b, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
			t.Fatalf("prometheus exited:\n%s", b)
		default:
		}
		code, _, err := HTTPGet(p.URL+"/-/ready", "")
		return err == nil && code == 200
	})
	return p
}

// promTarget is one entry of /api/v1/targets.
type promTarget struct {
	ScrapePool string            `json:"scrapePool"`
	ScrapeURL  string            `json:"scrapeUrl"`
	Health     string            `json:"health"`
	LastError  string            `json:"lastError"`
	Labels     map[string]string `json:"labels"`
}

func (p *promServer) targets(t *testing.T) []promTarget {
	t.Helper()
	var r struct {
		Data struct {
			ActiveTargets []promTarget `json:"activeTargets"`
		} `json:"data"`
	}
	p.get(t, "/api/v1/targets", &r)
	return r.Data.ActiveTargets
}

// promSeries is one result of an instant query.
type promSeries struct {
	Metric map[string]string `json:"metric"`
	Value  []any             `json:"value"`
}

func (p *promServer) query(t *testing.T, q string) []promSeries {
	t.Helper()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []promSeries `json:"result"`
		} `json:"data"`
	}
	p.get(t, "/api/v1/query?query="+url.QueryEscape(q), &r)
	if r.Status != "success" {
		t.Fatalf("query %s: %s %s", q, r.Status, r.Error)
	}
	return r.Data.Result
}

func (p *promServer) get(t *testing.T, path string, out any) {
	t.Helper()
	code, body, err := HTTPGet(p.URL+path, "")
	if err != nil || code != 200 {
		t.Fatalf("GET prometheus %s: %d %v %s", path, code, err, body)
	}
	if err := json.Unmarshal([]byte(body), out); err != nil {
		t.Fatalf("prometheus %s: %v", path, err)
	}
}

// hook is a local webhook receiver that records what it is sent.
type hook struct {
	mu   sync.Mutex
	msgs []hookMsg
	new  chan struct{}
}

// hookMsg is one POST a hook received.
type hookMsg struct {
	at      time.Time
	headers http.Header
	body    []byte
}

func newHook() *hook { return &hook{new: make(chan struct{}, 1)} }

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	h.msgs = append(h.msgs, hookMsg{at: time.Now(), headers: r.Header.Clone(), body: b})
	h.mu.Unlock()
	select {
	case h.new <- struct{}{}:
	default:
	}
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, "ok")
}

func (h *hook) all() []hookMsg {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hookMsg(nil), h.msgs...)
}

// hangingListener accepts TCP connections and never answers them: an
// endpoint that is down in the worst way, holding each attempt until its
// timeout.
type hangingListener struct {
	ln       net.Listener
	mu       sync.Mutex
	accepted int
	conns    []net.Conn
}

func newHangingListener(t *testing.T) *hangingListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hangingListener{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.mu.Lock()
			h.accepted++
			h.conns = append(h.conns, c)
			h.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		h.mu.Lock()
		for _, c := range h.conns {
			c.Close()
		}
		h.mu.Unlock()
	})
	return h
}

func (h *hangingListener) Accepted() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.accepted
}

// logStream is a running `gantry logs` whose output lines are collected
// with the time each was read.
type logStream struct {
	mu    sync.Mutex
	lines []logOut
	new   chan struct{}
	cmd   *exec.Cmd
	done  chan struct{}
	err   bytes.Buffer
}

type logOut struct {
	at   time.Time
	line string
}

// startLogs runs the CLI (e.g. logs -f app/x) in the background.
func (c *Cluster) startLogs(t *testing.T, args ...string) *logStream {
	t.Helper()
	cmd := exec.Command(gantryBin, args...)
	cmd.Env = append(os.Environ(), "GANTRY_CONFIG="+c.Config)
	s := &logStream{new: make(chan struct{}, 1), cmd: cmd, done: make(chan struct{})}
	cmd.Stderr = &s.err
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			s.mu.Lock()
			s.lines = append(s.lines, logOut{at: time.Now(), line: sc.Text()})
			s.mu.Unlock()
			select {
			case s.new <- struct{}{}:
			default:
			}
		}
		cmd.Wait()
	}()
	t.Cleanup(s.stop)
	return s
}

func (s *logStream) stop() {
	s.cmd.Process.Kill()
	<-s.done
}

// waitFor waits until a line containing substr was read and returns when
// it was read and the line.
func (s *logStream) waitFor(ctx context.Context, substr string) (logOut, bool) {
	for {
		s.mu.Lock()
		for _, l := range s.lines {
			if strings.Contains(l.line, substr) {
				s.mu.Unlock()
				return l, true
			}
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return logOut{}, false
		case <-s.done:
			// Read what is left once more, then give up.
			s.mu.Lock()
			defer s.mu.Unlock()
			for _, l := range s.lines {
				if strings.Contains(l.line, substr) {
					return l, true
				}
			}
			return logOut{}, false
		case <-s.new:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// count returns how many lines contain substr.
func (s *logStream) count(substr string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, l := range s.lines {
		if strings.Contains(l.line, substr) {
			n++
		}
	}
	return n
}

func (s *logStream) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, l := range s.lines {
		b.WriteString(l.line + "\n")
	}
	return b.String()
}
