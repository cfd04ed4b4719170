package agent

import (
	"context"
	"net"
	"net/http"
	"os"
	"syscall"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// An HTTP check's connect was cut at 2s by probeClient's dialer whatever
// the probe's timeout said: an app slow to accept (a full accept queue
// under load, SYN retransmitted after 1s and 3s) failed a check that had
// `timeout: 6s`. The TCP check honoured the timeout.
func TestHTTPCheckConnectHonoursTheTimeout(t *testing.T) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Skip(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Skip(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Skip(err)
	}
	ln, err := net.FileListener(os.NewFile(uintptr(fd), "ln"))
	if err != nil {
		t.Skip(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	// Fill the accept queue (backlog 0 holds one) with connections not
	// accepted yet.
	var fillers []net.Conn
	for range 2 {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 300*time.Millisecond)
		if err == nil {
			fillers = append(fillers, c)
		}
	}
	defer func() {
		for _, c := range fillers {
			c.Close()
		}
	}()
	// The app catches up after 2.5s.
	go func() {
		time.Sleep(2500 * time.Millisecond)
		http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	}()
	p := &v1.Probe{HTTP: &v1.HTTPCheck{Path: "/", Port: port}, Timeout: v1.Duration(6 * time.Second)}
	start := time.Now()
	err = check(context.Background(), nil, "", localhost, p)
	if err != nil {
		t.Fatalf("check with timeout 6s failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
	}
}
