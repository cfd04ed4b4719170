package loadgen

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// engines are the two ways of the built-in client; tests of it run on both.
var engines = []struct {
	name      string
	eventLoop bool
}{{"goroutines", false}, {"event loop", true}}

func TestRateIsKeptWhateverTheServerDoes(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) { testRateIsKept(t, e.eventLoop) })
	}
}

func testRateIsKept(t *testing.T, eventLoop bool) {
	for _, tc := range []struct {
		name  string
		delay time.Duration
	}{
		{"a fast server gets the target rate", 0},
		// A closed-loop client with a few workers would send far fewer
		// requests to a server that takes 200ms each.
		{"a slow server still gets the target rate", 200 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				time.Sleep(tc.delay)
				w.Header().Set("X-Version", "v1")
			}))
			t.Cleanup(srv.Close)
			run, err := Start(context.Background(), Config{URL: srv.URL, Rate: 400, Duration: time.Second, MarkerHeader: "X-Version", EventLoop: eventLoop})
			if err != nil {
				t.Fatal(err)
			}
			s := run.Wait().Summary()
			t.Log(s)
			if s.Sent != 400 || s.OK != 400 {
				t.Fatalf("sent %d, ok %d; want 400 of 400", s.Sent, s.OK)
			}
			if s.Rate < 390 || s.Rate > 410 {
				t.Fatalf("achieved rate %.1f/s, want 400/s", s.Rate)
			}
			if s.Markers["v1"] != 400 {
				t.Fatalf("markers = %v", s.Markers)
			}
			if s.P50 < tc.delay {
				t.Fatalf("p50 %s is below the server's delay %s", s.P50, tc.delay)
			}
		})
	}
}

func TestFailuresAreClassified(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) { testFailuresAreClassified(t, e.eventLoop) })
	}
}

func testFailuresAreClassified(t *testing.T, eventLoop bool) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) % 3 {
		case 0:
			w.WriteHeader(http.StatusServiceUnavailable)
		case 1:
			time.Sleep(300 * time.Millisecond)
		}
	}))
	t.Cleanup(srv.Close)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + ln.Addr().String()
	ln.Close()
	// A server that promises 100 bytes, sends 5 and closes.
	cut, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cut.Close() })
	go func() {
		for {
			c, err := cut.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				c.Read(buf)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello")
			}()
		}
	}()

	for _, tc := range []struct {
		name, url string
		want      []string
		allFail   bool
	}{
		{"statuses and timeouts are told apart", srv.URL, []string{"status 503", "timeout"}, false},
		{"a refused connection is named", dead, []string{"connection refused"}, true},
		{"a body cut short is a failure", "http://" + cut.Addr().String(), nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run, err := Start(context.Background(), Config{URL: tc.url, Rate: 60, Duration: 500 * time.Millisecond, Timeout: 100 * time.Millisecond, EventLoop: eventLoop})
			if err != nil {
				t.Fatal(err)
			}
			s := run.Wait().Summary()
			for _, w := range tc.want {
				if s.Failures[w] == 0 {
					t.Fatalf("no failure %q in %v", w, s.Failures)
				}
			}
			if s.Failed+s.OK != s.Sent {
				t.Fatalf("ok %d + failed %d != sent %d", s.OK, s.Failed, s.Sent)
			}
			if tc.allFail && (s.OK != 0 || s.Sent == 0) {
				t.Fatalf("%v: want every request failed", s)
			}
		})
	}
}

func TestStopAndWindows(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) { testStopAndWindows(t, e.eventLoop) })
	}
}

func testStopAndWindows(t *testing.T, eventLoop bool) {
	var version atomic.Value
	version.Store("v1")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := version.Load().(string)
		w.Header().Set("X-Version", v)
		w.Write([]byte("hello from " + v))
	}))
	t.Cleanup(srv.Close)
	cfg := Config{URL: srv.URL, Host: "hello.default.localhost", Rate: 200, EventLoop: eventLoop}
	if eventLoop {
		cfg.MarkerHeader = "X-Version"
	} else {
		cfg.Marker = func(_ *http.Response, body []byte) string { return strings.TrimPrefix(string(body), "hello from ") }
	}
	run, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	version.Store("v2")
	switched := time.Now()
	// Requests due just before the switch may still be answered by v2; a
	// request is only known to be "after" once it is due after the switch.
	time.Sleep(300 * time.Millisecond)
	res := run.Stop()
	all := res.Summary()
	after := res.Since(switched).Summary()
	t.Log(all)
	if all.Markers["v1"] == 0 || all.Markers["v2"] == 0 {
		t.Fatalf("markers = %v, want both versions", all.Markers)
	}
	if after.Markers["v1"] != 0 || after.Sent == 0 {
		t.Fatalf("after the switch: %v", after.Markers)
	}
	if all.Sent < 100 || all.Sent > 130 {
		t.Fatalf("sent %d in 0.6s at 200/s", all.Sent)
	}
	if n := len(run.Stop().List); n != all.Sent {
		t.Fatalf("a second Stop returned %d results, want %d", n, all.Sent)
	}
}

func TestInFlightCapRecordsOverload(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(block) })
	run, err := Start(context.Background(), Config{URL: srv.URL, Rate: 200, Duration: 200 * time.Millisecond, MaxInFlight: 5, Timeout: 300 * time.Millisecond, Client: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	s := run.Wait().Summary()
	if s.Failures["overload: generator in-flight limit reached"] < 20 {
		t.Fatalf("failures = %v, want overloads beyond 5 in flight", s.Failures)
	}
}

func TestBusyConnectionsDelayRequestsAndTheDelayCounts(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) { testBusyConnections(t, e.eventLoop) })
	}
}

func testBusyConnections(t *testing.T, eventLoop bool) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(50 * time.Millisecond)
	}))
	t.Cleanup(srv.Close)
	// Two connections serve at most 40 requests/s; 100/s are due.
	run, err := Start(context.Background(), Config{URL: srv.URL, Rate: 100, Duration: 500 * time.Millisecond, Connections: 2, EventLoop: eventLoop})
	if err != nil {
		t.Fatal(err)
	}
	res := run.Wait()
	s := res.Summary()
	if s.Sent != 50 || s.Failed != 0 {
		t.Fatalf("%v", s)
	}
	// They went out at about 40/s, however they were due.
	if s.Rate > 60 {
		t.Fatalf("achieved rate %.1f/s with two connections of 20/s each", s.Rate)
	}
	last := res.List[len(res.List)-1]
	if last.Lag < 500*time.Millisecond || last.Latency < last.Lag+50*time.Millisecond {
		t.Fatalf("last request: lag %s, latency %s; want the queueing in both", last.Lag, last.Latency)
	}
}

func TestConfigIsValidated(t *testing.T) {
	for _, c := range []Config{
		{Rate: 1}, {URL: "127.0.0.1:80", Rate: 1}, {URL: "http://x/"},
		{URL: "https://127.0.0.1/", Rate: 1, EventLoop: true},
		{URL: "http://127.0.0.1/", Rate: 1, EventLoop: true, Marker: func(*http.Response, []byte) string { return "" }},
		{URL: "http://127.0.0.1/", Rate: 1, EventLoop: true, Client: http.DefaultClient},
	} {
		if _, err := Start(context.Background(), c); err == nil {
			t.Errorf("Start(%+v) accepted a bad config", c)
		}
	}
}

func TestConnectionsClosedByTheServerWhileIdleAreNotFailures(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) { testIdleClosed(t, e.eventLoop) })
	}
}

func testIdleClosed(t *testing.T, eventLoop bool) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	// Every keep-alive connection is closed by the server between two
	// requests of the same worker.
	srv.Config.IdleTimeout = 20 * time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)
	run, err := Start(context.Background(), Config{URL: srv.URL, Rate: 20, Duration: time.Second, Connections: 1, EventLoop: eventLoop})
	if err != nil {
		t.Fatal(err)
	}
	s := run.Wait().Summary()
	if s.Failed != 0 || s.OK != 20 {
		t.Fatalf("%v", s)
	}
	// The goroutines find the close when they send, and send again on a
	// new connection, which they count; the event loop sees it while the
	// connection is idle and never sends on it.
	if !eventLoop && s.Retried < 15 || eventLoop && s.Retried != 0 {
		t.Fatalf("%d of 20 requests counted as retried: %v", s.Retried, s)
	}
}

// Requests due before Stop that no connection was free to send are
// failures, not rows missing from the results, so a target that holds
// every connection cannot pass for one that answered everything.
func TestRequestsDueBeforeStopAreAllAccountedFor(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				time.Sleep(100 * time.Millisecond)
			}))
			t.Cleanup(srv.Close)
			run, err := Start(context.Background(), Config{URL: srv.URL, Rate: 100, Connections: 2, EventLoop: e.eventLoop})
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(500 * time.Millisecond)
			res := run.Stop()
			s := res.Summary()
			t.Log(s)
			if s.Sent < 48 {
				t.Fatalf("%d results for the ~50 requests due before Stop", s.Sent)
			}
			for i, r := range res.List {
				if r.Seq != i {
					t.Fatalf("result %d has sequence number %d: a request is missing", i, r.Seq)
				}
			}
			if !e.eventLoop && s.Failures[notSent] == 0 {
				t.Fatalf("no request failed as not sent: %v", s.Failures)
			}
		})
	}
}

func TestHTTPSAndACustomClient(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Host", r.Host)
	}))
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"the built-in client speaks TLS", Config{TLSConfig: srv.Client().Transport.(*http.Transport).TLSClientConfig}},
		{"a given http.Client is used", Config{Client: srv.Client()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.URL, cfg.Host, cfg.Rate, cfg.Duration, cfg.MarkerHeader = srv.URL, "app.example.com", 100, 300*time.Millisecond, "X-Host"
			run, err := Start(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			s := run.Wait().Summary()
			if s.Failed != 0 || s.Markers["app.example.com"] != s.Sent || s.Sent < 25 {
				t.Fatalf("%v", s)
			}
		})
	}
}

func TestBodiesOfAnySizeAreReadToTheEnd(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			var n atomic.Int64
			big := strings.Repeat("x", 200<<10)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch n.Add(1) % 3 {
				case 0: // no length: chunked
					w.Write([]byte(big))
				case 1: // a length, and the connection closes after it
					w.Header().Set("Connection", "close")
					w.Header().Set("Content-Length", "102400")
					w.Write([]byte(big[:100<<10]))
				default:
					w.WriteHeader(http.StatusNoContent)
				}
			}))
			t.Cleanup(srv.Close)
			run, err := Start(context.Background(), Config{URL: srv.URL, Rate: 150, Duration: 400 * time.Millisecond, Connections: 4, EventLoop: e.eventLoop})
			if err != nil {
				t.Fatal(err)
			}
			res := run.Wait()
			if s := res.Summary(); s.Failed != 0 || s.OK != 60 {
				t.Fatalf("%v", s)
			}
			sizes := map[int64]int{}
			for _, r := range res.List {
				sizes[r.Bytes]++
			}
			if sizes[200<<10] != 20 || sizes[100<<10] != 20 || sizes[0] != 20 {
				t.Fatalf("body sizes seen: %v, want 20 each of 200 KiB, 100 KiB and none", sizes)
			}
		})
	}
}

// The event loop waits for the requests in flight after a Stop; it must
// sleep while it does, not spin on the stop signal.
func TestEventLoopSleepsWhileRequestsFinishAfterStop(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(400 * time.Millisecond)
	}))
	t.Cleanup(srv.Close)
	run, err := Start(context.Background(), Config{URL: srv.URL, Rate: 20, EventLoop: true})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Millisecond) // the first request is out
	before := cpuTime(t)
	s := run.Stop().Summary()
	used := cpuTime(t) - before
	if s.OK == 0 || s.Failed != 0 {
		t.Fatalf("%v", s)
	}
	if used > 150*time.Millisecond {
		t.Fatalf("the process used %s of CPU while a request finished in ~370ms: the loop spins", used)
	}
}

func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Stop and Wait may be called together: the requests due before the stop
// that never went out are recorded once, not once per caller.
func TestConcurrentStopAndWaitRecordEachRequestOnce(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
	}))
	t.Cleanup(srv.Close)
	run, err := Start(context.Background(), Config{URL: srv.URL, Rate: 20000, Connections: 1})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); run.Wait() }()
	go func() { defer wg.Done(); run.Stop() }()
	wg.Wait()
	res := run.Snapshot()
	for i, r := range res.List {
		if r.Seq != i {
			t.Fatalf("result %d has sequence number %d: recorded twice or missing (%d results)", i, r.Seq, len(res.List))
		}
	}
}

// A run ended by its context and stopped later (a deferred Stop) has no
// failures for what fell due in between: it was never meant to go.
func TestStopAfterTheContextEndedAddsNoFailures(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	run, err := Start(ctx, Config{URL: srv.URL, Rate: 100, Connections: 4})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	cancel()
	time.Sleep(500 * time.Millisecond)
	if s := run.Stop().Summary(); s.Failed != 0 || s.Sent > 40 {
		t.Errorf("%v: want about 30 requests, none failed", s)
	}
}
