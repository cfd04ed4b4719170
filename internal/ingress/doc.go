// Package ingress is Gantry's load balancer: an HTTP reverse proxy that
// routes by Host and path prefix to the ready instances of Apps, and an L4
// TCP balancer for ports marked `expose: tcp`.
//
// It owns the routing table built from discovery snapshots, endpoint
// selection (round-robin or least-requests), passive health (retry on a
// connect error, ejection after consecutive connect failures), draining of
// endpoints that leave a snapshot, TLS termination with per-host
// certificates chosen by SNI, access logging and per-app request metrics.
//
// It must not decide who is ready: that is discovery's rule, and a snapshot
// is taken as the truth. It does not issue or store certificates (a
// Certificates implementation does), and it does not probe backends
// actively: readiness probes are the agent's job.
//
// Requests take one of two paths. Those without a body (most GETs) go
// over the ingress's own HTTP/1.1 keep-alive pools, read and written by
// the serving goroutine (fastpath.go), and on the plain listener they are
// also parsed and answered by a small HTTP/1.1 front (front.go) that hands
// a connection to net/http as soon as it carries anything else. Plain
// request heads and plain answers from instances are read by small
// readers of the ingress's own (simplehead.go), which take a subset of
// what net/http accepts and read it to the same result (fuzzed against
// net/http); anything else is read by net/http. On Linux that path reads
// and writes its sockets with raw system calls (sockio_linux.go, ADR 0010),
// which spares the Go scheduler's per-call bookkeeping and the wake-ups of
// its monitor thread it caused at moderate load. Requests with a body,
// upgrades (WebSocket), and the rest go through httputil.ReverseProxy
// over a per-endpoint http.Transport. Both paths share routing,
// balancing, retries, ejection, draining and accounting.
//
// Zero downtime rests on three rules. A request picks its endpoint from
// the newest table, and re-picks if the endpoint it got was retired in
// between. An endpoint that leaves the table keeps serving the requests
// already on it, gets no new ones, and has its idle upstream connections
// closed until it has none left. A connect error means the request never
// reached the app, so it is retried once on another endpoint whatever its
// method.
package ingress
