package notify

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// An IPv6 address with a zone (%lo, %eth0) is not contained in any
// netip.Prefix, so the guard once let loopback, link-local and ULA targets
// through when the tenant wrote a zone into the URL; the kernel ignores
// the scope id for non-link-local addresses and connects anyway. NAT64
// and 6to4 addresses, which embed an IPv4 one, are refused too.
func TestGuardRefusesZonedIPv6(t *testing.T) {
	for _, a := range []string{"::1%lo", "fe80::1%eth0", "fd00:ec2::254%eth0", "::ffff:127.0.0.1%lo", "64:ff9b::a00:1", "2002:a00:1::1", "64:ff9b::7f00:1", "64:ff9b:1::1"} {
		if err := (&Guard{}).Check(netip.MustParseAddr(a)); err == nil {
			t.Errorf("Check(%s) = nil, want refused", a)
		}
	}
}

// The same through a whole delivery: a namespace without
// allowPrivateTargets does not reach a loopback listener with a zoned URL.
func TestZonedLoopbackURLIsRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback:", err)
	}
	hit := make(chan struct{}, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case hit <- struct{}{}:
		default:
		}
	}))
	srv.Listener = ln
	srv.Start()
	defer srv.Close()
	port := ln.Addr().(*net.TCPAddr).Port

	e := newEnv(t, false, nil) // namespace does NOT allow private targets
	n := &v1.Notifier{TypeMeta: v1.TypeMeta{Kind: "Notifier"}, Metadata: v1.ObjectMeta{Name: "zoned", Namespace: "default"},
		Spec: v1.NotifierSpec{Type: v1.NotifierWebhook, URL: "http://[::1%25lo]:" + itoa(port) + "/internal"}}
	if errs := n.Validate(); len(errs) > 0 {
		t.Fatalf("validate: %v", errs)
	}
	res := e.m.Test(e.ctx, n)
	select {
	case <-hit:
		t.Fatalf("a namespace without allowPrivateTargets reached a loopback listener through a zoned IPv6 URL: %+v", res)
	default:
	}
	if !res.Refused {
		t.Fatalf("result = %+v, want refused", res)
	}
}

func itoa(n int) string {
	return netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(n)).String()[len("0.0.0.0:"):]
}

// A NAT64 or 6to4 address is judged by the IPv4 address it carries: on an
// IPv6-only network with DNS64 every public webhook has one, and refusing
// the whole prefix would refuse them all.
func TestGuardJudgesNAT64ByItsIPv4Address(t *testing.T) {
	for _, a := range []string{"64:ff9b::c633:6407", "2002:c633:6407::1"} { // 198.51.100.7
		if err := (&Guard{}).Check(netip.MustParseAddr(a)); err != nil {
			t.Errorf("Check(%s) = %v; want allowed (it carries a public IPv4 address)", a, err)
		}
	}
}
