package ingress

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// An answer streams from the instance to the client, so a client that
// stops reading would hold the instance's connection, and its handler,
// for ever; past ClientSendTimeout without taking anything it is cut.
// Time the instance takes to answer is not the client's.
func TestClientsThatStopReadingAreCut(t *testing.T) {
	const timeout = 300 * time.Millisecond
	// What each client's /huge?k=KEY handler ended with.
	finished := map[string]chan error{"GET": make(chan error, 1), "POST": make(chan error, 1), "upgrade": make(chan error, 1), "steady": make(chan error, 1)}
	app := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			switch r.URL.Path {
			case "/huge":
				finished[r.URL.Query().Get("k")] <- writeHuge(w)
			case "/long-poll":
				time.Sleep(3 * timeout)
				w.WriteHeader(http.StatusNotModified)
			default:
				fmt.Fprint(w, "ok")
			}
		})
	}
	port, ins := startInstances(t, "sr", 1, app)
	h := startProxy(t, Config{ClientSendTimeout: timeout}, httpService("default", "sr", port, ins...))

	// The front's path, net/http's, and net/http's for a request with an
	// Upgrade field alone: it upgrades nothing (no "Connection: upgrade"),
	// so it is no tunnel and keeps the bound.
	for _, kind := range []string{"GET", "POST", "upgrade"} {
		method := kind
		if kind == "upgrade" {
			method = "GET"
		}
		req := func(path string) string {
			switch kind {
			case "POST":
				return "POST " + path + " HTTP/1.1\r\nHost: sr.default.localhost\r\nContent-Length: 1\r\n\r\nx"
			case "upgrade":
				return "GET " + path + " HTTP/1.1\r\nHost: sr.default.localhost\r\nUpgrade: anything\r\n\r\n"
			}
			return "GET " + path + " HTTP/1.1\r\nHost: sr.default.localhost\r\n\r\n"
		}
		t.Run(kind+" a client that stops reading is cut", func(t *testing.T) {
			rc := dialRaw(t, h)
			rc.send(req("/huge?k=" + kind))
			select {
			case err := <-finished[kind]:
				if err == nil {
					t.Fatal("the instance wrote 256 MiB to a client that reads nothing")
				}
			case <-time.After(20 * timeout):
				t.Fatal("the instance is still writing to a client that reads nothing")
			}
		})
		t.Run(kind+" an answer that comes late is sent, and so is the next", func(t *testing.T) {
			rc := dialRaw(t, h)
			rc.send(req("/"))
			if resp, body := rc.read(method); resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("first: %d %q", resp.StatusCode, body)
			}
			rc.send(req("/long-poll"))
			if resp, _ := rc.read(method); resp.StatusCode != http.StatusNotModified {
				t.Fatalf("long poll: %d", resp.StatusCode)
			}
			time.Sleep(3 * timeout)
			rc.send(req("/"))
			if resp, body := rc.read(method); resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("after an idle while: %d %q", resp.StatusCode, body)
			}
		})
	}
	t.Run("a slow but steady reader gets it all", func(t *testing.T) {
		rc := dialRaw(t, h)
		rc.c.SetDeadline(time.Now().Add(time.Minute))
		rc.send("GET /huge?k=steady HTTP/1.1\r\nHost: sr.default.localhost\r\n\r\n")
		resp, err := http.ReadResponse(rc.br, nil)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 16<<20)
		var n int64
		for n < 128<<20 {
			time.Sleep(timeout / 3)
			m, err := io.ReadFull(resp.Body, buf)
			n += int64(m)
			if err != nil {
				t.Fatalf("after %d bytes: %v", n, err)
			}
		}
		rc.c.Close()
		<-finished["steady"]
	})
}

// Over HTTP/2 the bound holds while a write waits for the client's
// flow-control window, and only then: a long poll waiting for its
// instance, longer than the timeout, is not cut.
func TestClientsThatStopReadingAreCutOverHTTP2(t *testing.T) {
	const timeout = 300 * time.Millisecond
	finished := make(chan error, 1)
	app := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/huge":
				finished <- writeHuge(w)
			case "/long-poll":
				time.Sleep(3 * timeout)
				fmt.Fprint(w, "late")
			}
		})
	}
	port, ins := startInstances(t, "sr2", 1, app)
	h := startProxy(t, Config{ClientSendTimeout: timeout}, httpService("default", "sr2", port, ins...))
	c := h2cClient(t, 0)

	resp, body := h.get(t, c, "sr2.default.localhost", "/long-poll")
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 || string(body) != "late" {
		t.Fatalf("long poll over %s: %d %q; want 200 \"late\"", resp.Proto, resp.StatusCode, body)
	}

	req, _ := http.NewRequest("GET", h.url+"/huge", nil)
	req.Host = "sr2.default.localhost"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close() // read nothing
	select {
	case err := <-finished:
		if err == nil {
			t.Fatal("the instance wrote 256 MiB to a client that reads nothing")
		}
	case <-time.After(20 * timeout):
		t.Fatal("the instance is still writing to an HTTP/2 client that reads nothing")
	}
}

// writeHuge writes up to 256 MiB to w and says how the writing ended.
func writeHuge(w http.ResponseWriter) error {
	buf := make([]byte, 64<<10)
	for range 4096 {
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
	return nil
}
