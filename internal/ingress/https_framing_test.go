package ingress

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// Over HTTPS, net/http alone reads requests (the front is plain HTTP
// only), and it drops the evidence of bad framing: a Content-Length beside
// Transfer-Encoding, and an HTTP/1.0 request's Transfer-Encoding. Such
// requests cannot be refused there; their answers end the connection
// instead, as the guide says.
func TestHTTPSBadFramingEndsTheConnection(t *testing.T) {
	port, ins := startInstances(t, "zzhf", 1, nil)
	svc := httpService("default", "shop", port, ins...)
	svc.Routes = []v1.Route{{Host: "shop.example.com", Path: "/", TLS: "shop-cert"}}
	certs := newTestCerts(t)
	tln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	startProxyTLS(t, Config{Certificates: certs}, tln, svc)
	pool := x509.NewCertPool()
	pool.AddCert(certs.ca)
	for _, req := range []string{
		"POST / HTTP/1.1\r\nHost: shop.example.com\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.0\r\nHost: shop.example.com\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	} {
		c, err := tls.Dial("tcp", tln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "shop.example.com", NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte(req))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !resp.Close {
			t.Errorf("over HTTPS %q: %d, Connection: close %v; want the connection ended", req, resp.StatusCode, resp.Close)
		}
	}
}
