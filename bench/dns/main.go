// Command dns is the Gantry side of the DNS benchmark (see run.sh): it
// serves a synthetic cluster of APPS apps × INSTANCES ready instances with
// internal/dns, and writes the same names as a zone file for CoreDNS's
// file plugin and a dnsperf query file, so both servers answer exactly
// the same questions with exactly the same data.
//
//	go run ./bench/dns -zone db.gantry.internal -queries queries.txt   # write files, exit
//	go run ./bench/dns -listen 127.0.0.1:15353                         # serve
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/discovery"
	gdns "github.com/gantry-dev/gantry/internal/dns"
)

func main() {
	listen := flag.String("listen", "", "serve Gantry DNS on this address (UDP and TCP)")
	apps := flag.Int("apps", 100, "number of apps in the synthetic cluster")
	instances := flag.Int("instances", 3, "ready instances per app")
	zone := flag.String("zone", "", "write the cluster as a zone file for CoreDNS's file plugin")
	queries := flag.String("queries", "", "write a dnsperf query file")
	flag.Parse()

	c := cluster{apps: *apps, instances: *instances}
	if *zone != "" {
		if err := writeFile(*zone, c.writeZone); err != nil {
			fatal(err)
		}
	}
	if *queries != "" {
		if err := writeFile(*queries, c.writeQueries); err != nil {
			fatal(err)
		}
	}
	if *listen == "" {
		return
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	src := discovery.NewBroadcaster()
	src.Publish(c.snapshot())
	// Metrics stay on, as in production: counting must be part of the
	// measured cost. Forwarding is off: every benchmark name is ours.
	s, err := gdns.New(gdns.Config{Upstreams: []string{}, Registerer: prometheus.NewRegistry()}, src, log)
	if err != nil {
		fatal(err)
	}
	defer s.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := s.ListenAndServe(ctx, *listen); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench/dns:", err)
	os.Exit(1)
}

func writeFile(path string, write func(*bufio.Writer)) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	write(w)
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// cluster is the synthetic data both servers answer from.
type cluster struct{ apps, instances int }

func (c cluster) app(a int) string { return fmt.Sprintf("app%d", a) }

func (c cluster) instance(a, i int) string { return fmt.Sprintf("app%d-%d", a, i) }

func (c cluster) ip(a, i int) string {
	n := a*c.instances + i + 1
	return fmt.Sprintf("10.88.%d.%d", n/250, n%250+1)
}

func (c cluster) snapshot() *discovery.Snapshot {
	snap := &discovery.Snapshot{Revision: 1, Time: time.Now(), Services: map[string]*discovery.Service{}}
	for a := range c.apps {
		s := &discovery.Service{
			Namespace: "default",
			Name:      c.app(a),
			Ports:     []v1.Port{{Name: "http", Port: 8080, Protocol: v1.ProtocolHTTP}},
		}
		for i := range c.instances {
			ep := discovery.Endpoint{Instance: c.instance(a, i), IP: c.ip(a, i)}
			s.Ready = append(s.Ready, ep)
			s.All = append(s.All, ep)
		}
		snap.Services[s.Key()] = s
	}
	return snap
}

// writeZone writes the records Gantry serves for the cluster, with the
// same TTLs and SOA, in master file format.
func (c cluster) writeZone(w *bufio.Writer) {
	fmt.Fprintln(w, "$ORIGIN gantry.internal.")
	fmt.Fprintln(w, "@ 1 IN SOA ns.gantry.internal. hostmaster.gantry.internal. 1 60 30 3600 1")
	fmt.Fprintln(w, "@ 60 IN NS ns.gantry.internal.")
	fmt.Fprintln(w, "ns 1 IN A 127.0.0.1")
	weight := 100 / max(c.instances, 1)
	for a := range c.apps {
		svc := c.app(a) + ".default.svc"
		for i := range c.instances {
			fmt.Fprintf(w, "%s 1 IN A %s\n", svc, c.ip(a, i))
			fmt.Fprintf(w, "%s.%s 1 IN A %s\n", c.instance(a, i), svc, c.ip(a, i))
			fmt.Fprintf(w, "_http._tcp.%s 1 IN SRV 0 %d 8080 %s.%s.gantry.internal.\n", svc, weight, c.instance(a, i), svc)
		}
	}
}

// writeQueries writes a shuffled mix that looks like clients using
// getaddrinfo with a search list: A and AAAA (NODATA) of services in
// equal parts, instance names, SRV, and search-list misses (NXDOMAIN).
func (c cluster) writeQueries(w *bufio.Writer) {
	var qs []string
	for a := range c.apps {
		svc := c.app(a) + ".default.svc.gantry.internal"
		for range 4 {
			qs = append(qs, svc+" A", svc+" AAAA")
		}
		for i := range c.instances {
			qs = append(qs, fmt.Sprintf("%s.%s A", c.instance(a, i), svc))
		}
		qs = append(qs, "_http._tcp."+svc+" SRV")
		qs = append(qs, svc+".default.svc.gantry.internal A")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(qs), func(i, j int) { qs[i], qs[j] = qs[j], qs[i] })
	for _, q := range qs {
		fmt.Fprintln(w, q)
	}
}
