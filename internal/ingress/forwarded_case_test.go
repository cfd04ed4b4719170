package ingress

import (
	"net/http"
	"testing"
)

// Client-sent forwarding fields, in any spelling of case, are replaced on
// every path (front, net/http, fast path, ReverseProxy).
func TestForwardedFieldsInAnyCaseAreReplaced(t *testing.T) {
	port, ins := startInstances(t, "fwdcase", 1, nil)
	h := startProxy(t, Config{}, httpService("default", "fwdcase", port, ins...))
	for _, extra := range []string{"", "Content-Length: 1\r\n", "Upgrade: x\r\n"} {
		rc := dialRaw(t, h)
		body := ""
		if extra == "Content-Length: 1\r\n" {
			body = "x"
		}
		rc.send("POST / HTTP/1.1\r\nHost: fwdcase.default.localhost\r\nx-forwarded-proto: https\r\nX-FORWARDED-HOST: evil.example\r\nforwarded: for=1.2.3.4\r\n" + extra + "\r\n" + body)
		_, b := rc.read("POST")
		e := decodeEcho(t, []byte(b))
		hd := http.Header(e.Header)
		if got := hd.Values("X-Forwarded-Proto"); len(got) != 1 || got[0] != "http" {
			t.Errorf("%q: X-Forwarded-Proto %v, want [http]", extra, got)
		}
		if got := hd.Values("X-Forwarded-Host"); len(got) != 1 || got[0] != "fwdcase.default.localhost" {
			t.Errorf("%q: X-Forwarded-Host %v", extra, got)
		}
		if got := hd.Values("Forwarded"); len(got) != 0 {
			t.Errorf("%q: Forwarded %v", extra, got)
		}
	}
}
