package ingress

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Bytes a client sends right behind its upgrade request (in the same
// segment, before the 101 came back) must reach the instance.
func TestBytesSentBeforeThe101ReachTheInstance(t *testing.T) {
	port, ins := startInstances(t, "early", 1, tunnelApp(false))
	h := startProxy(t, Config{}, httpService("default", "early", port, ins...))
	c, err := net.Dial("tcp", h.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	io.WriteString(c, "GET /chat HTTP/1.1\r\nHost: early.default.localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nearly\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	io.WriteString(c, "later\n")
	line, err := br.ReadString('\n')
	if line != "EARLY\n" {
		t.Fatalf("first echoed line = %q (%v), want \"EARLY\\n\": the bytes sent before the 101 were lost", line, err)
	}
}

// An instance that answers 101 with another protocol than the one asked
// for (or to a request that asked for none) gets the client a 502, and
// its connection is closed then, not left open until a finalizer runs.
func TestARefusedSwitchClosesTheInstanceConnection(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1)) // the leak is only undone by a finalizer
	var open atomic.Int64
	app := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Like gorilla/websocket: a token list that contains "websocket".
			if !strings.Contains(strings.ToLower(r.Header.Get("Upgrade")), "websocket") {
				http.Error(w, "no", 400)
				return
			}
			c, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			open.Add(1)
			defer open.Add(-1)
			defer c.Close()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			brw.Flush()
			io.Copy(io.Discard, brw) // until the proxy closes it
		})
	}
	port, ins := startInstances(t, "leak", 1, app)
	h := startProxy(t, Config{}, httpService("default", "leak", port, ins...))
	const n = 20
	for range n {
		rc := dialRaw(t, h)
		rc.send("GET /chat HTTP/1.1\r\nHost: leak.default.localhost\r\nUpgrade: websocket, x\r\nConnection: Upgrade\r\n\r\n")
		resp, _ := rc.read("GET")
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("status %d, want 502", resp.StatusCode)
		}
		rc.c.Close()
	}
	deadline := time.Now().Add(2 * time.Second)
	for open.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if k := open.Load(); k > 0 {
		runtime.GC() // only netFD finalizers close them
		time.Sleep(200 * time.Millisecond)
		t.Fatalf("%d of %d instance connections still open 2s after their clients got 502 and left (%d after a forced GC)", k, n, open.Load())
	}
}

// What ReverseProxy refuses after ModifyResponse (a name equal only by
// Unicode folding, or not printable) must be refused before it, or its
// refusal, which leaves the instance's connection open, is reached again.
func TestRefuseOtherSwitchComparesAsReverseProxyDoes(t *testing.T) {
	req := &http.Request{Header: http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}}
	for _, tc := range []struct {
		got  string
		pass bool
	}{
		{"websocket", true},
		{"WebSocket", true},
		{"websoc\u212aet", false}, // Kelvin sign
		{"web\u017focket", false}, // long s
		{"websocket\x7f", false},
		{"chat", false},
		{"", false},
	} {
		res := &http.Response{StatusCode: http.StatusSwitchingProtocols, Request: req, Header: http.Header{"Connection": {"Upgrade"}, "Upgrade": {tc.got}}}
		if err := refuseOtherSwitch(res); (err == nil) != tc.pass {
			t.Errorf("101 to %q for a websocket request: %v, want passed %v", tc.got, err, tc.pass)
		}
	}
}
