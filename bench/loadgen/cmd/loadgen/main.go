// Command loadgen sends HTTP requests at a fixed rate (open loop) and
// prints a summary: sent, ok, failures by reason, latency percentiles.
//
//	loadgen -url http://127.0.0.1:8080/ -host hello.default.localhost -rate 300 -duration 30s
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/bench/loadgen"
)

type headers http.Header

func (h headers) String() string { return "" }
func (h headers) Set(v string) error {
	k, val, ok := strings.Cut(v, ":")
	if !ok {
		return fmt.Errorf("header %q: want Name: value", v)
	}
	http.Header(h).Add(strings.TrimSpace(k), strings.TrimSpace(val))
	return nil
}

func main() {
	var cfg loadgen.Config
	hdr := headers{}
	body := ""
	asJSON := false
	strict := false
	flag.StringVar(&cfg.URL, "url", "", "target URL (required)")
	flag.StringVar(&cfg.Host, "host", "", "Host header to send")
	flag.StringVar(&cfg.Method, "method", "GET", "request method")
	flag.Var(hdr, "H", "request header 'Name: value' (repeatable)")
	flag.StringVar(&body, "body", "", "request body")
	flag.Float64Var(&cfg.Rate, "rate", 100, "requests per second")
	flag.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to send (0: until interrupted)")
	flag.DurationVar(&cfg.Timeout, "timeout", 10*time.Second, "per-request timeout")
	flag.IntVar(&cfg.MaxInFlight, "max-inflight", 10000, "outstanding requests before due ones count as overload")
	flag.IntVar(&cfg.Connections, "connections", 100, "keep-alive connections; due requests queue for a free one")
	flag.StringVar(&cfg.MarkerHeader, "marker-header", "", "response header to count by value (e.g. X-Version)")
	flag.BoolVar(&cfg.EventLoop, "event-loop", false, "send from one thread with epoll and a timerfd (Linux, plain http): due times kept within tens of µs, a few syscalls per request")
	flag.BoolVar(&asJSON, "json", false, "print the summary as JSON")
	flag.BoolVar(&strict, "strict", false, "exit 1 if any request failed")
	flag.Parse()
	cfg.Header = http.Header(hdr)
	if body != "" {
		cfg.Body = []byte(body)
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	run, err := loadgen.Start(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	s := run.Wait().Summary()
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(s)
	} else {
		fmt.Print(s)
	}
	if strict && s.Failed > 0 {
		os.Exit(1)
	}
}
