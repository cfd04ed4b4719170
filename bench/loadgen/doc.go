// Package loadgen is an open-loop HTTP load generator: it sends requests
// on a fixed schedule at a target rate whatever the responses do, and
// records every request's outcome. Benchmarks use it for latency at a
// given load, and end-to-end tests use it to prove that a rollout drops no
// request and to see which app version answered.
//
// Open loop matters for both. A closed-loop client (wrk, a worker pool)
// slows down when the server does, so a stall sends fewer requests and
// hides itself; here a stall shows up as failed or slow requests, and
// latency is measured from the time a request was due, not from when it
// finally went out.
//
// The built-in client has two ways of sending. By default each of its
// connections is a goroutine that sleeps on a timer until its next request
// is due. With Config.EventLoop, one OS thread runs an epoll loop woken
// by a timerfd: Go's timers can fire up to a millisecond late (the
// runtime's poller sleeps in whole milliseconds) and each goroutine
// wake-up costs tens of microseconds of CPU in a VM, so on a small machine
// shared with the target the event loop measures latency far closer to the
// truth (bench/ingress uses it). Its HTTP/1.1 response reader is written
// for this loop and fuzzed against net/http.
//
// It must not be used to judge maximum throughput: that is a closed-loop
// question (wrk answers it in bench/ingress).
package loadgen
