package ingress

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Request sends one request with the given pseudo-fields and extra
// fields over an h2c prior-knowledge connection to the proxy and returns
// the answer's :status ("" if the stream was reset instead).
func h2Request(t *testing.T, h *harness, method, path, authority string, extra ...hpack.HeaderField) string {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	fields := append([]hpack.HeaderField{
		{Name: ":method", Value: method}, {Name: ":scheme", Value: "http"},
		{Name: ":path", Value: path}, {Name: ":authority", Value: authority},
	}, extra...)
	for _, f := range fields {
		enc.WriteField(f)
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
	var status string
	dec := hpack.NewDecoder(4096, func(f hpack.HeaderField) {
		if f.Name == ":status" {
			status = f.Value
		}
	})
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("no answer from the proxy: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.HeadersFrame:
			if _, err := dec.Write(f.HeaderBlockFragment()); err != nil {
				t.Fatal(err)
			}
			return status
		case *http2.RSTStreamFrame, *http2.GoAwayFrame:
			return ""
		}
	}
}

// HTTP/2 field values may hold spaces, which must not reach an instance
// inside the HTTP/1.1 request line, and a host field sent beside
// :authority must not reach it as a second Host: the request is refused,
// or goes on with exactly the line and Host that were routed on.
func TestHTTP2FieldsCannotRewriteTheRequestLine(t *testing.T) {
	heads := make(chan string, 8)
	svc := rawService(t, "h2f", func(c net.Conn) {
		br := bufio.NewReader(c)
		var head strings.Builder
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\r\n" {
				break
			}
			head.WriteString(line)
		}
		heads <- head.String()
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	})
	h := startProxy(t, Config{}, svc)
	const host = "h2f.default.localhost"
	for _, tc := range []struct {
		name           string
		method, path   string
		extra          []hpack.HeaderField
		status         string
		line, hostLine string // what the instance must read, when it is reached
	}{
		{name: "plain", method: "GET", path: "/a?b=c", status: "200",
			line: "GET /a?b=c HTTP/1.1", hostLine: "Host: " + host},
		{name: "space in :method", method: "GET /admin/delete-everything", path: "/public", status: "400"},
		{name: "space in the query", method: "GET", path: "/public?x /admin HTTP/1.0", status: "400"},
		{name: "host beside :authority", method: "GET", path: "/", status: "200",
			extra: []hpack.HeaderField{{Name: "host", Value: "evil.example.com"}},
			line:  "GET / HTTP/1.1", hostLine: "Host: " + host},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status := h2Request(t, h, tc.method, tc.path, host, tc.extra...)
			if status != tc.status {
				t.Fatalf("status %q, want %s", status, tc.status)
			}
			if tc.line == "" {
				select {
				case head := <-heads:
					t.Fatalf("the instance was reached:\n%s", head)
				default:
				}
				return
			}
			var head string
			select {
			case head = <-heads:
			case <-time.After(2 * time.Second):
				t.Fatal("no request reached the instance")
			}
			lines := strings.Split(strings.TrimSpace(head), "\r\n")
			if lines[0] != tc.line {
				t.Errorf("request line %q, want %q", lines[0], tc.line)
			}
			var hosts []string
			for _, l := range lines[1:] {
				if strings.HasPrefix(strings.ToLower(l), "host:") {
					hosts = append(hosts, l)
				}
			}
			if len(hosts) != 1 || hosts[0] != tc.hostLine {
				t.Errorf("Host fields %q, want exactly %q", hosts, tc.hostLine)
			}
		})
	}
}

func TestCheckH2Request(t *testing.T) {
	for _, tc := range []struct {
		method, host string
		url          url.URL
		ok           bool
	}{
		{"GET", "a.localhost", url.URL{Path: "/x", RawQuery: "q=1&r=%20"}, true},
		{"PROPFIND", "a.localhost:8080", url.URL{Path: "/x y"}, true}, // the path is escaped when written
		{"GET", "a.localhost", url.URL{Path: "/", RawQuery: "q=é"}, true},
		{"GET /x", "a.localhost", url.URL{Path: "/"}, false},
		{"", "a.localhost", url.URL{Path: "/"}, false},
		{"GET", "a b", url.URL{Path: "/"}, false},
		{"GET", "a.localhost", url.URL{Path: "/", RawQuery: "q= HTTP/1.0"}, false},
		{"GET", "a.localhost", url.URL{Path: "/", RawQuery: "q=\t"}, false},
		{"GET", "a.localhost", url.URL{Path: "/", RawQuery: "q=\x7f"}, false},
		{"GET", "a.localhost", url.URL{Opaque: "/a b"}, false},
	} {
		r := &http.Request{Method: tc.method, Host: tc.host, URL: &tc.url}
		if msg := checkH2Request(r); (msg == "") != tc.ok {
			t.Errorf("%q %q %q: %q, want ok=%v", tc.method, tc.host, tc.url.String(), msg, tc.ok)
		}
	}
}
