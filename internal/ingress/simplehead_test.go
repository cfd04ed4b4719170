package ingress

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"reflect"
	"testing"
)

func readSimple(raw []byte, method string) (*http.Response, http.Header, []byte, error) {
	pc := &pconn{br: bufio.NewReaderSize(bytes.NewReader(raw), 16<<10)}
	dst := http.Header{}
	resp := pc.readSimpleResponse(&http.Request{Method: method}, dst)
	if resp == nil {
		return nil, nil, nil, nil
	}
	body, err := io.ReadAll(resp.Body)
	return resp, dst, body, err
}

// relayedHeader is what relayFast copies from a parsed header map.
func relayedHeader(h http.Header) http.Header {
	out := http.Header{}
	listed := connectionListed(h)
	for k, vv := range h {
		if responseHopHeaders[k] || listed[k] {
			continue
		}
		out[k] = vv
	}
	return out
}

func TestReadSimpleResponse(t *testing.T) {
	tests := []struct {
		name   string
		raw    string
		method string
		taken  bool
	}{
		{"an answer with a length is read here", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello", "GET", true},
		{"repeated fields keep every value", "HTTP/1.1 404 Not Found\r\nSet-Cookie: a=1\r\nContent-Length: 0\r\nset-cookie: b=2\r\n\r\n", "GET", true},
		{"keep-alive framing fields are dropped", "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok", "GET", true},
		{"a status line without a reason is read here", "HTTP/1.1 500\r\nContent-Length: 0\r\n\r\n", "GET", true},
		{"a chunked answer goes to net/http", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "GET", false},
		{"an answer without a length goes to net/http", "HTTP/1.1 200 OK\r\n\r\n", "GET", false},
		{"two lengths go to net/http", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", "GET", false},
		{"a signed length goes to net/http", "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx", "GET", false},
		{"Connection: close goes to net/http", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"a listed field goes to net/http", "HTTP/1.1 200 OK\r\nConnection: X-A\r\nX-A: 1\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"HTTP/1.0 goes to net/http", "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"a folded line goes to net/http", "HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"bare LF line ends go to net/http", "HTTP/1.1 200 OK\nContent-Length: 0\n\n", "GET", false},
		{"a control byte in a value goes to net/http", "HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"a space before the colon goes to net/http", "HTTP/1.1 200 OK\r\nX-A : 1\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"Pragma goes to net/http, which adds Cache-Control", "HTTP/1.1 200 OK\r\nPragma: no-cache\r\nContent-Length: 0\r\n\r\n", "GET", false},
		{"304 goes to net/http", "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", "GET", false},
		{"1xx goes to net/http", "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", "GET", false},
		{"the answer to HEAD goes to net/http", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", "HEAD", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, dst, body, err := readSimple([]byte(tt.raw), tt.method)
			if (resp != nil) != tt.taken {
				t.Fatalf("taken = %v, want %v", resp != nil, tt.taken)
			}
			if resp == nil {
				return
			}
			want, err2 := http.ReadResponse(bufio.NewReader(bytes.NewReader([]byte(tt.raw))), &http.Request{Method: tt.method})
			if err2 != nil {
				t.Fatalf("net/http refuses an answer read here: %v", err2)
			}
			wantBody, _ := io.ReadAll(want.Body)
			if resp.StatusCode != want.StatusCode || resp.ContentLength != want.ContentLength || !reflect.DeepEqual(dst, relayedHeader(want.Header)) || string(body) != string(wantBody) || err != nil {
				t.Fatalf("read here: %d %d %v %q %v\nnet/http:  %d %d %v %q", resp.StatusCode, resp.ContentLength, dst, body, err,
					want.StatusCode, want.ContentLength, relayedHeader(want.Header), wantBody)
			}
		})
	}
}

func TestSimpleResponseReplacesEarlierFields(t *testing.T) {
	pc := &pconn{br: bufio.NewReader(bytes.NewReader([]byte("HTTP/1.1 200 OK\r\nX-A: new\r\nContent-Length: 0\r\n\r\n")))}
	dst := http.Header{"X-A": {"old"}}
	if pc.readSimpleResponse(&http.Request{Method: "GET"}, dst) == nil {
		t.Fatal("not read")
	}
	if got := dst["X-A"]; !reflect.DeepEqual(got, []string{"new"}) {
		t.Fatalf("X-A = %q, want [new]", got)
	}
}

func TestSimpleResponseBodyCutShortIsAnError(t *testing.T) {
	_, _, body, err := readSimple([]byte("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello"), "GET")
	if err != io.ErrUnexpectedEOF || string(body) != "hello" {
		t.Fatalf("body %q, err %v; want hello, unexpected EOF", body, err)
	}
}

// FuzzSimpleResponse holds readSimpleResponse to net/http: an answer it
// reads must be one http.ReadResponse reads to the same status, relayed
// fields, length and body. An instance's answer read two ways is how
// response splitting starts.
func FuzzSimpleResponse(f *testing.F) {
	for _, seed := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
		"HTTP/1.1 404 Not Found\r\nSet-Cookie: a=1\r\nContent-Length: 0\r\nset-cookie: b=2\r\n\r\n",
		"HTTP/1.1 200 OK\r\nConnection: keep-alive, Keep-Alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nContent-Length: 007\r\nX-Empty:\r\nX-Pad: \t a b \t\r\n\r\n1234567",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 200 \xff\r\nX-Obs: \x80\xfe\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nab",
		"HTTP/1.1 200 OK\r\nUpgrade: h2c\r\nTe: x\r\nContent-Length: 0\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		resp, dst, body, err := readSimple(raw, "GET")
		if resp == nil {
			return
		}
		want, werr := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), &http.Request{Method: "GET"})
		if werr != nil {
			t.Fatalf("read here, refused by net/http (%v): %q", werr, raw)
		}
		wantBody, wantErr := io.ReadAll(want.Body)
		switch {
		case resp.StatusCode != want.StatusCode, resp.ContentLength != want.ContentLength, want.Close:
			t.Fatalf("%q\nhere:     %d %d\nnet/http: %d %d close=%v", raw, resp.StatusCode, resp.ContentLength, want.StatusCode, want.ContentLength, want.Close)
		case !reflect.DeepEqual(dst, relayedHeader(want.Header)):
			t.Fatalf("%q\nhere:     %q\nnet/http: %q", raw, dst, relayedHeader(want.Header))
		case string(body) != string(wantBody), (err == nil) != (wantErr == nil):
			t.Fatalf("%q\nhere:     %q %v\nnet/http: %q %v", raw, body, err, wantBody, wantErr)
		}
	})
}

// sameRequest compares what the proxy reads of a request.
func sameRequest(a, b *http.Request) bool {
	return a.Method == b.Method && a.RequestURI == b.RequestURI && reflect.DeepEqual(a.URL, b.URL) &&
		a.Proto == b.Proto && a.ProtoMajor == b.ProtoMajor && a.ProtoMinor == b.ProtoMinor &&
		reflect.DeepEqual(a.Header, b.Header) && a.Host == b.Host && a.Close == b.Close &&
		a.ContentLength == b.ContentLength && reflect.DeepEqual(a.TransferEncoding, b.TransferEncoding) &&
		a.Body == b.Body && a.Trailer == nil && b.Trailer == nil && a.Context() == b.Context()
}

func TestParseSimpleRequest(t *testing.T) {
	tests := []struct {
		name  string
		head  string
		taken bool
	}{
		{"a plain GET is read here", "GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: app.example.com\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n", true},
		{"repeated fields keep every value in order", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nx-a: 2\r\n\r\n", true},
		{"Connection: close marks the request closing", "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\n", true},
		{"a second question mark stays in the query", "GET /a?b?c HTTP/1.1\r\nHost: a\r\n\r\n", true},
		{"an empty query goes to net/http", "GET /a? HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"a percent-escape goes to net/http", "GET /a%2Fb HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"an absolute target goes to net/http", "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"HTTP/1.0 goes to net/http", "GET / HTTP/1.0\r\nHost: a\r\n\r\n", false},
		{"no Host goes to net/http", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", false},
		{"two Hosts go to net/http", "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", false},
		{"a body length goes to net/http", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", false},
		{"Pragma goes to net/http, which adds Cache-Control", "GET / HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\n\r\n", false},
		{"a folded line goes to net/http", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n 2\r\n\r\n", false},
		{"a lower-case method goes to net/http", "get / HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"bare LF line ends go to net/http", "GET / HTTP/1.1\nHost: a\n\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseSimpleRequest([]byte(tt.head))
			if (got != nil) != tt.taken {
				t.Fatalf("taken = %v, want %v", got != nil, tt.taken)
			}
			if got == nil {
				return
			}
			want, err := http.ReadRequest(bufio.NewReader(bytes.NewReader([]byte(tt.head))))
			if err != nil {
				t.Fatalf("net/http refuses a head read here: %v", err)
			}
			if !sameRequest(got, want) {
				t.Fatalf("here:     %+v\nnet/http: %+v", got, want)
			}
		})
	}
}

// FuzzSimpleRequest holds parseSimpleRequest to http.ReadRequest: a head
// read here must be one net/http reads to the same request.
func FuzzSimpleRequest(f *testing.F) {
	for _, seed := range []string{
		"GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: app.example.com\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nx-a: 2\r\nConnection: keep-alive, Close\r\n\r\n",
		"DELETE /a?b?c HTTP/1.1\r\nhost:  a:80 \r\nX-Empty:\r\nX-Obs: \x80\r\n\r\n",
		"GET /a;b=c/@:$&+,~_.- HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a? HTTP/1.1\r\nHost: a\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, head []byte) {
		got := parseSimpleRequest(head)
		if got == nil {
			return
		}
		br := bufio.NewReader(bytes.NewReader(head))
		want, err := http.ReadRequest(br)
		if err != nil {
			t.Fatalf("read here, refused by net/http (%v): %q", err, head)
		}
		if br.Buffered() != 0 {
			t.Fatalf("net/http reads a shorter head than %q", head)
		}
		if !sameRequest(got, want) {
			t.Fatalf("%q\nhere:     %+v %#v\nnet/http: %+v %#v", head, got, got.URL, want, want.URL)
		}
	})
}
