package ingress

import (
	"fmt"
	"sync/atomic"
	"testing"
)

// With one of three endpoints ejected, the two healthy ones share the
// traffic evenly, under either policy (least-requests with no load is all
// ties). Before, a pick that landed on the ejected endpoint moved on to its
// neighbour, which so got 667 of 1000 requests and the other 333.
func TestEjectedEndpointsTurnsAreSharedEvenly(t *testing.T) {
	for _, least := range []bool{false, true} {
		t.Run(fmt.Sprintf("least=%v", least), func(t *testing.T) {
			var eps []*endpoint
			for _, name := range []string{"a", "b", "c"} {
				eps = append(eps, &endpoint{key: name, instance: name, addr: "10.0.0." + name + ":80", load: new(atomic.Int64)})
			}
			eps[1].ejected.Store(100)
			be := &backend{eps: eps, least: least}
			seen := map[string]int{}
			for i := 0; i < 1000; i++ {
				seen[be.pick(50, nil).key]++
			}
			if seen["b"] != 0 {
				t.Fatalf("the ejected endpoint got %d picks: %v", seen["b"], seen)
			}
			for _, k := range []string{"a", "c"} {
				if n := seen[k]; n < 450 || n > 550 {
					t.Fatalf("endpoint %s picked %d times of 1000, want about 500: %v", k, n, seen)
				}
			}
		})
	}
}

// An instance that left the ready set with requests in flight and came
// back is still charged with those requests under least-requests, until
// they finish. Before, the new endpoint object started at zero, so the
// instance looked idle and took more than its share.
func TestLeastRequestsKeepsInFlightCountAcrossReadinessFlap(t *testing.T) {
	a := &instance{name: "a", ip: "10.0.0.1"}
	b := &instance{name: "b", ip: "10.0.0.2"}
	src := newSource(httpService("default", "web", 8080, a, b))
	p, err := New(Config{Balancer: LeastRequests, AppsDomain: "localhost"}, src, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	current := func() (*backend, *endpoint) {
		t.Helper()
		r := p.table.Load().match("web.default.localhost", "/")
		if r == nil {
			t.Fatal("no route for web.default.localhost")
		}
		for _, e := range r.backend.eps {
			if e.instance == "a" {
				return r.backend, e
			}
		}
		t.Fatal("instance a is not in the backend")
		return nil, nil
	}
	_, oldA := current()
	oldA.acquire()
	oldA.acquire()

	p.apply(snapshot(httpService("default", "web", 8080, b))) // a turns unready
	p.apply(snapshot(httpService("default", "web", 8080, a, b)))
	be, newA := current()
	if newA == oldA {
		t.Fatal("instance a kept its endpoint object across the flap; the test needs a new one")
	}
	if got := newA.load.Load(); got != 2 {
		t.Fatalf("instance a's load after the flap = %d, want the 2 requests still running on it", got)
	}
	for i := 0; i < 10; i++ {
		if e := be.pick(monoNow(), nil); e.instance != "b" {
			t.Fatalf("pick %d went to %s, which has 2 requests in flight; want idle b", i, e.instance)
		}
	}

	// Once they finish, the instance is idle again, and its retired object
	// drains although the new one carries requests.
	oldA.release()
	oldA.release()
	newA.acquire()
	defer newA.release()
	if got := newA.load.Load(); got != 1 {
		t.Fatalf("instance a's load = %d, want 1", got)
	}
	p.sweep()
	p.sweep()
	p.mu.Lock()
	_, draining := p.draining[oldA]
	p.mu.Unlock()
	if draining {
		t.Fatal("the retired endpoint still drains, held by the new endpoint's request")
	}
}
