package ingress

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// The front once held a finished answer in its buffer while more of the
// connection was buffered, so that pipelined requests were answered in one
// write: the answer to a quick request then waited for the instance's
// answer to a slow one behind it (and, with a partial head behind it, for
// the rest of that head). Each answer now goes out when it is done, as
// net/http's do. The slow request here waits until the quick answer has
// been read, and the rest of the partial head is sent only then: an answer
// held back would never come.
func TestPipelinedAnswerIsNotHeldBack(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free)
	app := func(name string) http.Handler {
		h := echoHandler(name)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				<-release
			}
			h.ServeHTTP(w, r)
		})
	}
	port, ins := startInstances(t, "pipe", 1, app)
	h := startProxy(t, Config{}, httpService("default", "pipe", port, ins...))
	const host = "pipe.default.localhost"

	t.Run("slow request behind", func(t *testing.T) {
		rc := dialRaw(t, h)
		rc.send("GET /fast HTTP/1.1\r\nHost: " + host + "\r\n\r\nGET /slow HTTP/1.1\r\nHost: " + host + "\r\n\r\n")
		rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if resp, body := rc.read("GET"); resp.StatusCode != 200 || !strings.Contains(body, `"path":"/fast"`) {
			t.Fatalf("first answer %d %s; want /fast's", resp.StatusCode, body)
		}
		free()
		if resp, body := rc.read("GET"); resp.StatusCode != 200 || !strings.Contains(body, `"path":"/slow"`) {
			t.Fatalf("second answer %d %s; want /slow's", resp.StatusCode, body)
		}
	})
	t.Run("partial head behind", func(t *testing.T) {
		rc := dialRaw(t, h)
		rc.send("GET /fast HTTP/1.1\r\nHost: " + host + "\r\n\r\nGET /next HTTP/1.1\r\n")
		rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if resp, body := rc.read("GET"); resp.StatusCode != 200 || !strings.Contains(body, `"path":"/fast"`) {
			t.Fatalf("first answer %d %s; want /fast's", resp.StatusCode, body)
		}
		rc.send("Host: " + host + "\r\n\r\n")
		if resp, body := rc.read("GET"); resp.StatusCode != 200 || !strings.Contains(body, `"path":"/next"`) {
			t.Fatalf("second answer %d %s; want /next's", resp.StatusCode, body)
		}
	})
}
