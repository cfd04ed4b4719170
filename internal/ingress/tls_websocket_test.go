package ingress

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// A WebSocket over HTTPS (HTTP/1.1 by ALPN), with an SNI name in upper
// case, gets the route's certificate and a working tunnel.
func TestWebSocketOverTLSWithOddCaseSNI(t *testing.T) {
	port, ins := startInstances(t, "tlsws", 1, tunnelApp(false))
	svc := httpService("default", "tlsws", port, ins...)
	svc.Routes = []v1.Route{{Host: "ws.example.com", Path: "/", TLS: "auto"}}
	certs := newTestCerts(t)
	tln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	startProxyTLS(t, Config{Certificates: certs}, tln, svc)
	pool := x509.NewCertPool()
	pool.AddCert(certs.ca)
	c, err := tls.Dial("tcp", tln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "WS.Example.COM.", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET /chat HTTP/1.1\r\nHost: WS.EXAMPLE.com.:443\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	fmt.Fprintf(c, "hi\n")
	if line, err := br.ReadString('\n'); line != "HI\n" {
		t.Fatalf("echo %q %v", line, err)
	}
}
