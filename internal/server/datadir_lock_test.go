package server

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// A second server on a data directory in use removed the first's etcd
// sockets (meant for a restart after kill -9) and then waited for ever on
// etcd's own lock. It now fails at once, naming the lock, and the first
// server's store stays reachable.
func TestASecondServerOnADataDirectoryInUseFailsAtOnce(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := apiOnly(dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := Start(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()

	done := make(chan error, 1)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	go func() {
		b, err := Start(ctx2, cfg, log)
		if err == nil {
			b.Stop()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "gantry.lock is locked") {
			t.Errorf("the second Start: %v; want an error naming the lock", err)
		}
	case <-time.After(8 * time.Second):
		t.Errorf("second Start on a data directory in use neither failed nor returned within 8s (its ctx ended after 5s)")
	}

	// Is the first server's etcd still reachable by its socket?
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"unix://" + filepath.Join(dir, "etcd", "client.sock")},
		DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("the first server's etcd is unreachable after the second start: %v", err)
	}
	defer cli.Close()
	gctx, gcancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer gcancel()
	if _, err := cli.Get(gctx, "/"); err != nil {
		t.Errorf("the first server's etcd is unreachable after the second start: %v", err)
	}
}

// apiOnly is the config of a server in dir with the API alone, on a free
// loopback port, without TLS: no registry, load balancer or DNS.
func apiOnly(dir string) Config {
	cfg := DefaultConfig(dir)
	cfg.APIAddr = "127.0.0.1:0"
	cfg.TLS = false
	cfg.RegistryAddr, cfg.IngressAddr, cfg.DNSAddr = "", "", ""
	return cfg
}
