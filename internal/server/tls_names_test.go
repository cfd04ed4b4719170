package server

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/gantry-dev/gantry/internal/clusterslot"
)

// The API certificate names loopback, the host name and the outbound
// address; a server reached by another of its addresses (a second NIC, a
// public address behind NAT, a full domain name) was refused by every
// agent and CLI, and nothing could add names: --tls-name (Config.TLSNames)
// does.
func TestTLSNamesAreInTheAPICertificate(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := DefaultConfig(dir)
	free, err := clusterslot.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(free)
	cfg.APIAddr = "0.0.0.0:" + port
	cfg.RegistryAddr, cfg.IngressAddr, cfg.DNSAddr = "", "", ""
	cfg.TLSNames = []string{"127.0.0.2"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := Start(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	conn, err := tls.Dial("tcp", "127.0.0.2:"+port, &tls.Config{RootCAs: s.CA.Pool(), ServerName: "127.0.0.2"})
	if err != nil {
		t.Errorf("an address given in TLSNames is refused by TLS clients: %v", err)
		return
	}
	conn.Close()
}
