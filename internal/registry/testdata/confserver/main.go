// Command confserver runs Gantry's registry alone, with authentication
// on, for scripts/conformance.sh: one platform token, which may do
// anything. It lives under testdata so that it is no part of the build.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/gantry-dev/gantry/internal/registry"
	"github.com/gantry-dev/gantry/internal/registry/registrytest"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	data := flag.String("data", "", "data directory (required)")
	token := flag.String("token", "", "the platform token clients log in with (required)")
	addrFile := flag.String("addr-file", "", "write the bound address here once listening")
	flag.Parse()
	if *data == "" || *token == "" {
		fmt.Fprintln(os.Stderr, "usage: confserver -data DIR -token TOKEN [-addr HOST:PORT] [-addr-file FILE]")
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	reg, err := registry.New(ctx, registry.Config{
		DataDir:       *data,
		Authenticator: registrytest.OneToken{Token: *token, User: "conformance"},
		Authorizer:    registrytest.OneToken{},
	}, log)
	if err != nil {
		log.Error("start registry", "err", err)
		os.Exit(1)
	}
	defer reg.Close()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Error("listen", "err", err)
		os.Exit(1)
	}
	if *addrFile != "" {
		if err := os.WriteFile(*addrFile, []byte(ln.Addr().String()), 0o644); err != nil {
			log.Error("write address", "err", err)
			os.Exit(1)
		}
	}
	srv := &http.Server{Handler: reg.Handler()}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("serve", "err", err)
		os.Exit(1)
	}
}
