package ingress

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
)

// The guide: "a request is sent to an instance a second time only when it
// never got there: ... a kept-alive connection the instance had closed
// before answering". The fast path once also retried when the instance
// had read the request and begun its answer (a partial head, read as
// io.ErrUnexpectedEOF, was taken for a stale connection), e.g. an
// instance that crashed mid-answer: the DELETE ran twice.
func TestNoRetryAfterAPartialAnswer(t *testing.T) {
	var ln net.Listener
	var err error
	var port int
	var ip string
	for try := 0; try < 20; try++ {
		probe, _ := net.Listen("tcp", "127.0.0.1:0")
		port = probe.Addr().(*net.TCPAddr).Port
		probe.Close()
		ip = freeIP()
		if ln, err = net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port))); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var deletes, conns atomic.Int64
	serveConns(ln, func(c net.Conn) {
		first := conns.Add(1) == 1
		br := bufio.NewReader(c)
		for n := 0; ; n++ {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			if req.Method == http.MethodDelete {
				deletes.Add(1)
				if first {
					// Took the request, began the answer, then died.
					io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Deleted: yes\r\n")
					return
				}
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	in := &instance{name: "zzr-0", ip: ip}
	h := startProxy(t, Config{}, httpService("default", "zzr", port, in))
	rc := dialRaw(t, h)
	rc.send("GET /warm HTTP/1.1\r\nHost: zzr.default.localhost\r\n\r\n")
	rc.read("GET")
	rc.send("DELETE /thing HTTP/1.1\r\nHost: zzr.default.localhost\r\n\r\n")
	resp, _ := rc.read("DELETE")
	if n := deletes.Load(); n != 1 || resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("the instance got the DELETE %d times (answer %d); it had read it and begun answering: want once, and a 502", n, resp.StatusCode)
	}
}
