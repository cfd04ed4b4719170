package ingress

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// An answer cut short on one HTTP/2 stream resets that stream only: the
// other streams of the connection finish.
func TestH2StreamAbortSparesTheConnection(t *testing.T) {
	app := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			if strings.HasPrefix(r.URL.Path, "/cut") {
				c, brw, _ := http.NewResponseController(w).Hijack()
				brw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
				brw.Flush()
				c.Close()
				return
			}
			time.Sleep(300 * time.Millisecond)
			io.WriteString(w, "whole")
		})
	}
	port, ins := startInstances(t, "h2abort", 1, app)
	h := startProxy(t, Config{}, httpService("default", "h2abort", port, ins...))
	c := h2cClient(t, 5*time.Second)
	// Open the connection first so that every request shares it.
	if resp, _ := h.get(t, c, "h2abort.default.localhost", "/warm"); resp.ProtoMajor != 2 {
		t.Fatal("not HTTP/2")
	}
	var wg sync.WaitGroup
	errs := make(chan string, 10)
	do := func(method, path string, wantWhole bool) {
		defer wg.Done()
		var body io.Reader
		if method == http.MethodPost {
			body = strings.NewReader("x")
		}
		req, _ := http.NewRequest(method, h.url+path, body)
		req.Host = "h2abort.default.localhost"
		resp, err := c.Do(req)
		if err != nil {
			if wantWhole {
				errs <- method + " " + path + ": " + err.Error()
			}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if wantWhole && (err != nil || string(b) != "whole") {
			errs <- method + " " + path + ": " + string(b) + " " + errString(err)
		}
	}
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		wg.Add(2)
		go do(m, "/slow", true)
		time.Sleep(50 * time.Millisecond)
		go do(m, "/cut", false)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
