package apiserver_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// Two Apps created at once, in different namespaces (or in one without a
// quota), with the same route: checkClaims listed the other Apps and the
// write followed without any lock, so both could be admitted and the
// host+path ended up "owned" by two Apps, where the docs say the second is
// refused with 409.
func TestConcurrentCreatesOfOneRouteAdmitOnlyOne(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	const n = 6
	for i := 0; i < n; i++ {
		if code, body := raw(t, ts, "POST", "/api/v1/namespaces", "application/json",
			[]byte(fmt.Sprintf(`{"kind":"Namespace","metadata":{"name":"ns%d"}}`, i))); code != 201 {
			t.Fatalf("namespace: %d %s", code, body)
		}
	}
	worst := 0
	for round := 0; round < 10; round++ {
		created := createAtOnce(t, ts, n, func(i int) (string, string) {
			return fmt.Sprintf("/api/v1/namespaces/ns%d/apps", i),
				fmt.Sprintf(`{"kind":"App","metadata":{"name":"a%d"},"spec":{"image":"x:1","ports":[{"port":80}],"routes":[{"host":"race%d.example.com"}]}}`, round, round)
		}, func(code int, body string) {})
		worst = max(worst, created)
	}
	if worst > 1 {
		t.Errorf("up to %d Apps were admitted at once with the same route host; want at most 1 (the rest 409)", worst)
	}
}

// The same race for an App's nodePort: checkNodePorts ran in the same
// unguarded claim check, and several Apps were admitted with one port.
func TestConcurrentCreatesOfOneNodePortAdmitOnlyOne(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	const n = 6
	created := createAtOnce(t, ts, n, func(i int) (string, string) {
		return "/api/v1/namespaces/default/apps",
			fmt.Sprintf(`{"kind":"App","metadata":{"name":"np%d"},"spec":{"image":"x:1","ports":[{"port":5432,"protocol":"tcp","expose":"tcp","nodePort":31000}]}}`, i)
	}, func(code int, body string) {
		if code != 409 {
			t.Errorf("create: %d %s", code, body)
		}
	})
	if created > 1 {
		t.Errorf("%d Apps were admitted at once with nodePort 31000; want at most 1 (the rest 409)", created)
	}
}

// createAtOnce posts n creates to ts at the same moment (request i goes to the
// path and body req(i) gives) and returns how many were answered 201;
// refused gets every other answer.
func createAtOnce(t *testing.T, ts *testServer, n int, req func(i int) (path, body string), refused func(code int, body string)) int {
	t.Helper()
	var ok atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			path, body := req(i)
			code, b := raw(t, ts, "POST", path, "application/json", []byte(body))
			if code == 201 {
				ok.Add(1)
			} else {
				refused(code, b)
			}
		}(i)
	}
	close(start)
	wg.Wait()
	return int(ok.Load())
}
