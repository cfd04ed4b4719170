package apiserver_test

import (
	"bufio"
	"context"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// A watch whose client goes away ends on the server, with its store watch.
func TestWatchEndsWhenClientGoes(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	for i := 0; i < 30; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+"/api/v1/apps?watch=true&labelSelector=a%3Db", nil)
		req.Header.Set("Authorization", "Bearer "+ts.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		bufio.NewReader(resp.Body).ReadString('\n')
		cancel()
		resp.Body.Close()
	}
	left := func() int {
		buf := make([]byte, 4<<20)
		buf = buf[:runtime.Stack(buf, true)]
		return strings.Count(string(buf), "apiserver.(*Server).watch(") + strings.Count(string(buf), "store.(*Store).Watch.func")
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && left() > 0 {
		time.Sleep(100 * time.Millisecond)
	}
	if n := left(); n > 0 {
		t.Fatalf("%d watch goroutines left after their clients went away", n)
	}
}
