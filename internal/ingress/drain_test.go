package ingress

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// moreInstances starts n more instances of an App on its port.
func moreInstances(t *testing.T, prefix string, n, port int) []*instance {
	t.Helper()
	for try := 0; try < 10; try++ {
		out, err := listenInstances(prefix, n, port, nil, nil)
		if err != nil {
			continue
		}
		t.Cleanup(func() {
			for _, in := range out {
				in.srv.Close()
			}
		})
		return out
	}
	t.Fatalf("could not start %s instances on port %d", prefix, port)
	return nil
}

// loadResult is what one request of the test load saw.
type loadResult struct {
	start    time.Time
	instance string
	err      string
}

// runLoad sends GETs from workers goroutines over keep-alive connections
// until stop is closed.
func runLoad(t *testing.T, h *harness, host string, workers int, stop <-chan struct{}) func() []loadResult {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: workers}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var mu sync.Mutex
	var results []loadResult
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				r := loadResult{start: time.Now()}
				req, _ := http.NewRequest(http.MethodGet, h.url+"/", nil)
				req.Host = host
				resp, err := client.Do(req)
				if err != nil {
					r.err = err.Error()
				} else {
					b, rerr := io.ReadAll(resp.Body)
					resp.Body.Close()
					r.instance = resp.Header.Get("X-Instance")
					switch {
					case rerr != nil:
						r.err = "read body: " + rerr.Error()
					case resp.StatusCode != 200:
						r.err = resp.Status + ": " + strings.TrimSpace(string(b))
					}
				}
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
			}
		}()
	}
	return func() []loadResult {
		wg.Wait()
		tr.CloseIdleConnections()
		return results
	}
}

func TestSnapshotSwapsUnderLoadDropNothing(t *testing.T) {
	port, v1s := startInstances(t, "v1", 3, nil)
	v2s := moreInstances(t, "v2", 3, port)
	h := startProxy(t, Config{}, httpService("default", "app", port, v1s...))
	const host = "app.default.localhost"
	stop := make(chan struct{})
	wait := runLoad(t, h, host, 16, stop)
	pause := func() { time.Sleep(250 * time.Millisecond) }
	shutdown := func(in *instance) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := in.srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown %s: %v", in.name, err)
		}
	}

	pause()
	// Surge: the new version joins.
	h.publish(t, httpService("default", "app", port, append(append([]*instance{}, v1s...), v2s...)...))
	pause()
	// The rollout's order: out of the table, a drain delay, then SIGTERM.
	h.publish(t, httpService("default", "app", port, v1s[1], v1s[2], v2s[0], v2s[1], v2s[2]))
	time.Sleep(100 * time.Millisecond)
	shutdown(v1s[0])
	pause()
	// A late snapshot: the instance stops before the ingress hears of it.
	// Connects to it are refused and must be retried elsewhere.
	shutdown(v1s[1])
	time.Sleep(50 * time.Millisecond)
	h.publish(t, httpService("default", "app", port, v1s[2], v2s[0], v2s[1], v2s[2]))
	pause()
	// No drain delay at all: stop it the moment it leaves the table.
	h.publish(t, httpService("default", "app", port, v2s...))
	shutdown(v1s[2])
	pause()
	// Churn: many snapshots that reorder and shrink the set.
	for i := 0; i < 60; i++ {
		set := []*instance{v2s[i%3], v2s[(i+1)%3]}
		if i%2 == 0 {
			set = append(set, v2s[(i+2)%3])
		}
		h.publish(t, httpService("default", "app", port, set...))
		time.Sleep(3 * time.Millisecond)
	}
	h.publish(t, httpService("default", "app", port, v2s...))
	settled := time.Now()
	pause()
	close(stop)
	results := wait()

	failures := map[string]int{}
	byInstance := map[string]int{}
	late := map[string]int{}
	for _, r := range results {
		if r.err != "" {
			failures[r.err]++
			continue
		}
		byInstance[r.instance]++
		if r.start.After(settled) {
			late[r.instance]++
		}
	}
	t.Logf("%d requests; per instance %v; after the last snapshot %v", len(results), byInstance, late)
	if len(failures) > 0 {
		var msgs []string
		for m, n := range failures {
			msgs = append(msgs, m+" ×"+strconv.Itoa(n))
		}
		sort.Strings(msgs)
		t.Fatalf("%d failed requests:\n%s", len(msgs), strings.Join(msgs, "\n"))
	}
	if len(results) < 500 {
		t.Fatalf("only %d requests ran; the load did not exercise the swaps", len(results))
	}
	for name := range late {
		if !strings.HasPrefix(name, "v2-") {
			t.Fatalf("%s answered after it had left the table", name)
		}
	}
}

func TestRemovedInstanceDrains(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	started := make(chan struct{}, 1)
	slowFirst := func(name string) http.Handler {
		h := echoHandler(name)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				started <- struct{}{}
				<-release
			}
			h.ServeHTTP(w, r)
		})
	}
	port, ins := startInstances(t, "d", 2, slowFirst)
	h := startProxy(t, Config{}, httpService("default", "d", port, ins[0]))
	client := &http.Client{Transport: &http.Transport{}}
	slow := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, h.url+"/slow", nil)
		req.Host = "d.default.localhost"
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			if resp.StatusCode != 200 {
				err = io.ErrUnexpectedEOF
			}
			resp.Body.Close()
		}
		slow <- err
	}()
	<-started
	// While the slow request holds one connection to d-0, open another
	// that goes back to the idle pool.
	h.get(t, client, "d.default.localhost", "/")
	if n := ins[0].conns.Load(); n < 2 {
		t.Fatalf("want an idle and a busy connection to d-0 before removing it, have %d", n)
	}
	h.publish(t, httpService("default", "d", port, ins[1]))

	t.Run("new requests go only to the remaining instance", func(t *testing.T) {
		for i := 0; i < 10; i++ {
			if resp, _ := h.get(t, client, "d.default.localhost", "/"); resp.Header.Get("X-Instance") != "d-1" {
				t.Fatalf("request went to %s", resp.Header.Get("X-Instance"))
			}
		}
	})
	t.Run("the in-flight request finishes", func(t *testing.T) {
		unblock()
		if err := <-slow; err != nil {
			t.Fatalf("in-flight request failed: %v", err)
		}
	})
	t.Run("idle connections to the removed instance are closed", func(t *testing.T) {
		deadline := time.Now().Add(3 * time.Second)
		for {
			h.p.mu.Lock()
			draining := len(h.p.draining)
			h.p.mu.Unlock()
			open := ins[0].conns.Load()
			if open == 0 && draining == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d connections to the removed instance still open, %d endpoints draining", open, draining)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if ins[1].conns.Load() == 0 {
			t.Fatal("the remaining instance lost its connections too")
		}
	})
}

func TestShutdownLetsInFlightRequestsFinish(t *testing.T) {
	slow := func(name string) http.Handler {
		h := echoHandler(name)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				time.Sleep(400 * time.Millisecond)
			}
			h.ServeHTTP(w, r)
		})
	}
	port, ins := startInstances(t, "sd", 1, slow)
	src := newSource(httpService("default", "sd", port, ins...))
	p, err := New(Config{}, src, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- p.Serve(ctx, ln, nil) }()
	url := "http://" + ln.Addr().String()

	// An idle keep-alive connection, and a request in flight.
	idle := &http.Client{Transport: &http.Transport{}}
	get := func(c *http.Client, path string) (int, error) {
		req, _ := http.NewRequest(http.MethodGet, url+path, nil)
		req.Host = "sd.default.localhost"
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := get(idle, "/"); err != nil || code != 200 {
		t.Fatalf("warm-up: %d %v", code, err)
	}
	slowDone := make(chan error, 1)
	go func() {
		code, err := get(&http.Client{Transport: &http.Transport{}}, "/slow")
		if err == nil && code != 200 {
			err = fmt.Errorf("status %d", code)
		}
		slowDone <- err
	}()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	cancel()
	if err := <-slowDone; err != nil {
		t.Fatalf("in-flight request failed during shutdown: %v", err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the in-flight request finished")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("shutdown took %s: the idle connection held it up", d)
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Fatal("the listener still accepts after shutdown")
	}
}
