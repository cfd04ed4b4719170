// Command webapp is the test application of Gantry's end-to-end tests: a
// static HTTP server that says which version and instance answered, can be
// made unready, burns CPU on request, and shuts down gracefully on SIGTERM.
package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	version := os.Getenv("VERSION")
	host, _ := os.Hostname()
	var requests atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		n := requests.Add(1)
		if os.Getenv("LOG_REQUESTS") != "" {
			log.Printf("request %d %s %s", n, r.Method, r.URL.Path)
		}
		w.Header().Set("X-Version", version)
		w.Header().Set("X-Instance", host)
		fmt.Fprintf(w, "version=%s instance=%s\n", version, host)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if os.Getenv("NEVER_READY") != "" {
			http.Error(w, "configured never to be ready", http.StatusServiceUnavailable)
			return
		}
		if _, err := os.Stat("/tmp/unready"); err == nil {
			http.Error(w, "unready: /tmp/unready exists", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/sick", func(w http.ResponseWriter, r *http.Request) {
		if err := os.WriteFile("/tmp/unready", nil, 0o644); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "now failing /healthz")
	})
	mux.HandleFunc("/well", func(w http.ResponseWriter, r *http.Request) {
		os.Remove("/tmp/unready")
		fmt.Fprintln(w, "healthy again")
	})
	mux.HandleFunc("/burn", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		end := time.Now().Add(time.Duration(ms) * time.Millisecond)
		x := 0
		for time.Now().Before(end) {
			x++
		}
		fmt.Fprintln(w, x)
	})
	mux.HandleFunc("/resolve", func(w http.ResponseWriter, r *http.Request) {
		addrs, err := net.DefaultResolver.LookupHost(r.Context(), r.URL.Query().Get("name"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		fmt.Fprintln(w, addrs)
	})
	mux.HandleFunc("/dial", func(w http.ResponseWriter, r *http.Request) {
		c, err := net.DialTimeout("tcp", r.URL.Query().Get("addr"), 2*time.Second)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		c.Close()
		fmt.Fprintln(w, "connected")
	})
	srv := &http.Server{Addr: ":" + port, Handler: mux}
	go func() {
		if burn := os.Getenv("BURN_CPU"); burn != "" {
			for {
				_ = burn
			}
		}
	}()
	go func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
		<-ch
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	log.Printf("webapp %s listening on :%s", version, port)
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
