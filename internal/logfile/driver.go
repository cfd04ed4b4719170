package logfile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/runtime/v2/logging"
)

// DriverConfig tells the log driver where to write. The runtime passes it
// as the last command-line argument of the driver (see Arg), because the
// shim gives the driver nothing else but the container's ID and namespace.
type DriverConfig struct {
	Path     string `json:"path"`
	MaxSize  int64  `json:"maxSize,omitempty"`
	MaxFiles int    `json:"maxFiles,omitempty"`
}

// Arg encodes c as the driver's argument.
func (c DriverConfig) Arg() string {
	b, _ := json.Marshal(c) // cannot fail: strings and numbers only
	return string(b)
}

// ParseDriverConfig decodes an argument made by Arg.
func ParseDriverConfig(arg string) (DriverConfig, error) {
	var c DriverConfig
	if err := json.Unmarshal([]byte(arg), &c); err != nil {
		return DriverConfig{}, fmt.Errorf("log driver config: %w", err)
	}
	if c.Path == "" {
		return DriverConfig{}, errors.New("log driver config: no path")
	}
	return c, nil
}

// drainTimeout bounds how long the driver keeps reading after the shim
// asks it to stop. The shim closes its ends of the pipes before it sends
// SIGTERM, so what is left is only what the kernel still buffers.
const drainTimeout = 5 * time.Second

// RunDriver is the main function of the binary log driver (the hidden
// `gantry __log-driver` command). containerd's shim starts it for each
// task with the container's stdout on fd 3, its stderr on fd 4 and a
// readiness pipe on fd 5, and with the DriverConfig as the last argument.
// It never returns: it exits 0 when both streams end, 1 on error.
func RunDriver() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "log driver: missing config argument (this command is started by containerd's shim)")
		os.Exit(2)
	}
	cfg, err := ParseDriverConfig(os.Args[len(os.Args)-1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	logging.Run(func(ctx context.Context, lc *logging.Config, ready func() error) error {
		return drive(ctx, cfg, lc, ready, log)
	})
}

// drive copies both streams into the log file until they end.
func drive(ctx context.Context, cfg DriverConfig, lc *logging.Config, ready func() error, log *slog.Logger) error {
	w, err := Create(cfg.Path, Options{MaxSize: cfg.MaxSize, MaxFiles: cfg.MaxFiles, Log: log})
	if err != nil {
		return err
	}
	defer w.Close()

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, s := range []struct {
		name string
		r    io.Reader
	}{{Stdout, lc.Stdout}, {Stderr, lc.Stderr}} {
		wg.Go(func() {
			dropped, err := w.Copy(s.name, s.r)
			if dropped > 0 {
				err = errors.Join(err, fmt.Errorf("%s: %d lines could not be written", s.name, dropped))
			}
			errs[i] = err
		})
	}
	if err := ready(); err != nil {
		return fmt.Errorf("signal readiness to the shim: %w", err)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		select {
		case <-done:
		case <-time.After(drainTimeout):
			return errors.New("log driver: streams still open after stop")
		}
	}
	return errors.Join(errs...)
}
