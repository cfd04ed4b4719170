package ingress

import (
	"bufio"
	"bytes"
	"net"
	"net/http"
	"reflect"
	"sync"
	"testing"
	"time"
)

// FuzzFrontHead checks the front against net/http's own server: any
// request head the front would serve itself must be one net/http accepts,
// parsed into the same method, target, host and headers. A head the two
// read differently is how request smuggling starts.
func FuzzFrontHead(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n",
		"GET /p?q=1 HTTP/1.1\r\nHost: a.example.com:8080\r\nAccept: */*\r\nX-A: 1\r\nX-A: 2\r\n\r\n",
		"HEAD / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\n",
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET / HTTP/1.1\r\nhost: a\r\nHOST: b\r\n\r\n",
		"GET / HTTP/1.1\r\n\r\n",
		"GET http://b/ HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n Folded: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(raw), frontBufSize)
		n, err := headLength(br)
		if err != nil || n == 0 {
			return
		}
		head, _ := br.Peek(n)
		head = bytes.Clone(head)
		req := parseHead(head)
		if req == nil || !frontEligible(req, head) {
			return
		}
		got, status := serveByNetHTTP(t, head)
		if status != http.StatusOK {
			t.Fatalf("the front serves a head net/http answers %d to: %q", status, head)
		}
		want := seenRequest{Method: req.Method, URI: req.RequestURI, Host: req.Host, Header: req.Header}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("head %q\nfront:    %+v\nnet/http: %+v", head, want, got)
		}
	})
}

type seenRequest struct {
	Method, URI, Host string
	Header            http.Header
}

// serveByNetHTTP runs head through a real net/http server over a pipe.
func serveByNetHTTP(t *testing.T, head []byte) (seenRequest, int) {
	client, server := net.Pipe()
	defer client.Close()
	var seen seenRequest
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = seenRequest{Method: r.Method, URI: r.RequestURI, Host: r.Host, Header: r.Header.Clone()}
	})}
	defer srv.Close()
	go srv.Serve(&oneConnListener{c: server})
	client.SetDeadline(time.Now().Add(5 * time.Second))
	go client.Write(head)
	resp, err := http.ReadResponse(bufio.NewReader(client), nil)
	if err != nil {
		t.Fatalf("net/http did not answer %q: %v", head, err)
	}
	resp.Body.Close()
	return seen, resp.StatusCode
}

// oneConnListener hands out one connection, then blocks until closed.
type oneConnListener struct {
	c    net.Conn
	once sync.Once
	done chan struct{}
	mu   sync.Mutex
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if l.done == nil {
		l.done = make(chan struct{})
	}
	c := l.c
	l.c = nil
	done := l.done
	l.mu.Unlock()
	if c != nil {
		return c, nil
	}
	<-done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error {
	l.mu.Lock()
	if l.done == nil {
		l.done = make(chan struct{})
	}
	l.mu.Unlock()
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return &net.TCPAddr{} }
