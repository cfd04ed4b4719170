package ingress

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/discovery"
)

// Over HTTP/2 a stream's read deadline is a timer that fires on its own,
// not only while a read waits: one left armed after a read would count
// the time the instance spends not taking the body against the client.
func TestAnInstanceSlowToTakeABodyIsWaitedForOverHTTP2(t *testing.T) {
	const timeout = 300 * time.Millisecond
	app := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var one [1]byte
			io.ReadFull(r.Body, one[:])
			time.Sleep(3 * timeout)
			n, err := io.Copy(io.Discard, r.Body)
			if err != nil {
				return
			}
			fmt.Fprintf(w, "read %d", n+1)
		})
	}
	port, ins := startInstances(t, "sb3", 1, app)
	h := startProxy(t, Config{ClientBodyTimeout: timeout}, httpService("default", "sb3", port, ins...))
	c := h2cClient(t, 20*timeout)

	big := strings.Repeat("x", 8<<20)
	req, _ := http.NewRequest(http.MethodPost, h.url+"/late-reader", strings.NewReader(big))
	req.Host = "sb3.default.localhost"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("late reader: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK || string(body) != fmt.Sprintf("read %d", len(big)) {
		t.Fatalf("late reader: %s %d: %s", resp.Proto, resp.StatusCode, body)
	}
}

// An instance may answer before it has taken the whole body (a 401 or
// 413 to an upload): the transport goes on sending the body after the
// handler has returned, and the guard must not reach the stream's
// ResponseWriter then, which net/http has released.
func TestAnEarlyAnswerToAnUploadOutlivesItsHandlerOverHTTP2(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	serveConns(ln, func(c net.Conn) {
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n\r\nno")
		io.Copy(io.Discard, br) // and takes whatever comes
	})
	port := ln.Addr().(*net.TCPAddr).Port
	svc := &discovery.Service{Namespace: "default", Name: "early", Ports: []v1.Port{{Name: "http", Port: port, Protocol: v1.ProtocolHTTP}}}
	ep := discovery.Endpoint{Instance: "early-0", IP: "127.0.0.1"}
	svc.Ready, svc.All = []discovery.Endpoint{ep}, []discovery.Endpoint{ep}
	h := startProxy(t, Config{ClientBodyTimeout: time.Second}, svc)
	c := h2cClient(t, 10*time.Second)

	for i := 0; i < 20; i++ {
		pr, pw := io.Pipe()
		go func() {
			chunk := bytes.Repeat([]byte("x"), 16<<10)
			for end := time.Now().Add(200 * time.Millisecond); time.Now().Before(end); {
				if _, err := pw.Write(chunk); err != nil {
					return
				}
			}
			pw.Close()
		}()
		req, _ := http.NewRequest(http.MethodPost, h.url+"/upload", pr)
		req.Host = "early.default.localhost"
		resp, err := c.Do(req)
		if err != nil {
			pr.Close()
			continue // the stream may be reset once the answer is in
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		pr.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("upload: %d", resp.StatusCode)
		}
	}
	time.Sleep(300 * time.Millisecond) // for a late read to come
}
