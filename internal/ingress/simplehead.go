package ingress

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/url"
	"slices"
)

// Most request heads a client sends, and most answers an instance gives,
// are plain: HTTP/1.1, CRLF line ends, ordinary fields, a target of safe
// characters, a Content-Length on the answer. The readers here take
// those with one allocation for all the strings of a head, where
// net/http's readers spend one per field and line, a header map, a URL,
// a body reader; the rest of a request's cost is the kernel's. Anything
// else is left to http.ReadRequest and http.ReadResponse, so what is
// read here is a subset of what net/http accepts, read to the same
// result: FuzzSimpleRequest and FuzzSimpleResponse hold the two to that,
// and FuzzFrontHead the front as a whole to net/http's server.

// maxSimpleFields bounds the fields of a head read here; a longer head
// goes to net/http.
const maxSimpleFields = 64

// parsedRequest puts a request and its URL in one allocation.
type parsedRequest struct {
	req http.Request
	url url.URL
}

// parseSimpleRequest parses a plain request head (origin-form target,
// HTTP/1.1, no body framing, no field net/http would rewrite) into the
// request http.ReadRequest would make of it, or returns nil.
func parseSimpleRequest(head []byte) *http.Request {
	sp := bytes.IndexByte(head, ' ')
	if sp <= 0 || sp > 16 {
		return nil
	}
	for _, c := range head[:sp] {
		if c < 'A' || c > 'Z' {
			return nil
		}
	}
	line, rest, ok := cutCRLF(head)
	if !ok {
		return nil
	}
	const proto = " HTTP/1.1"
	if len(line) < sp+1+len(proto) || string(line[len(line)-len(proto):]) != proto {
		return nil
	}
	target := line[sp+1 : len(line)-len(proto)]
	query := -1
	if len(target) == 0 || target[0] != '/' {
		return nil
	}
	for i, c := range target {
		if c == '?' && query < 0 {
			query = i
			continue
		}
		if !pathByte(c) && !(query >= 0 && (c == '?')) {
			return nil
		}
	}
	if query == len(target)-1 {
		return nil // url.Parse's ForceQuery
	}
	var fields [maxSimpleFields]field
	nf := 0
	host := -1
	closing := false
	off := len(head) - len(rest)
	for {
		line, rest, ok = cutCRLF(rest)
		if !ok {
			return nil
		}
		if len(line) == 0 {
			break
		}
		f, ok := scanField(line, off)
		if !ok || nf == maxSimpleFields {
			return nil
		}
		key := line[:f.k1-f.k0]
		switch {
		case asciiEqualFold(key, "Host"):
			if host >= 0 {
				return nil
			}
			host = nf
		case asciiEqualFold(key, "Content-Length"), asciiEqualFold(key, "Transfer-Encoding"),
			asciiEqualFold(key, "Pragma"), asciiEqualFold(key, "Upgrade"), asciiEqualFold(key, "Http2-Settings"):
			return nil
		case asciiEqualFold(key, "Connection"):
			for tok := range bytes.SplitSeq(head[f.v0:f.v1], []byte(",")) {
				if asciiEqualFold(bytes.Trim(tok, " \t"), "close") {
					closing = true
				}
			}
		}
		fields[nf] = f
		nf++
		off = len(head) - len(rest)
	}
	if host < 0 || len(rest) != 0 {
		return nil
	}

	hs := string(head)
	pr := new(parsedRequest)
	r := &pr.req
	r.Method = hs[:sp]
	r.RequestURI = hs[sp+1 : sp+1+len(target)]
	pr.url.Path = r.RequestURI
	if query >= 0 {
		pr.url.Path, pr.url.RawQuery = r.RequestURI[:query], r.RequestURI[query+1:]
	}
	r.URL = &pr.url
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.1", 1, 1
	r.Host = hs[fields[host].v0:fields[host].v1]
	r.Close = closing
	r.Body = http.NoBody
	r.Header = make(http.Header, nf-1)
	vals := make([]string, nf)
	for i, f := range fields[:nf] {
		if i == host {
			continue
		}
		k := http.CanonicalHeaderKey(hs[f.k0:f.k1])
		vals[i] = hs[f.v0:f.v1]
		if vv := r.Header[k]; vv != nil {
			r.Header[k] = append(vv, vals[i])
		} else {
			r.Header[k] = vals[i : i+1 : i+1]
		}
	}
	return r
}

// pathByte reports whether c may appear in a target's path or query
// here: characters url.ParseRequestURI keeps as they are, without
// unescaping or setting RawPath. Others ('%', '#', '!', ...) go to
// net/http.
func pathByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '.', '_', '~', '/', '$', '&', '+', ',', ':', ';', '=', '@':
		return true
	}
	return false
}

// scanField checks a field line (without its CRLF) found at off in its
// head and returns the offsets of its name and trimmed value.
func scanField(line []byte, off int) (field, bool) {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return field{}, false
	}
	for _, c := range line[:colon] {
		if !tokenByte(c) {
			return field{}, false
		}
	}
	v0, v1 := colon+1, len(line)
	if !validValue(line[v0:]) {
		return field{}, false
	}
	for v0 < v1 && (line[v0] == ' ' || line[v0] == '\t') {
		v0++
	}
	for v1 > v0 && (line[v1-1] == ' ' || line[v1-1] == '\t') {
		v1--
	}
	return field{k0: off, k1: off + colon, v0: off + v0, v1: off + v1}, true
}

// field is one header field of a head, as offsets into it.
type field struct{ k0, k1, v0, v1 int }

// readSimpleResponse waits for the head of the answer to r and, if it is
// a simple one, consumes it, fills dst with its end-to-end fields and
// returns the response, whose Header is nil and whose Body reads from the
// connection. Otherwise, or on a read error, it consumes nothing and
// returns nil.
func (pc *pconn) readSimpleResponse(r *http.Request, dst http.Header) *http.Response {
	if r.Method == http.MethodHead {
		return nil
	}
	n, err := headLength(pc.br)
	if err != nil || n == 0 {
		return nil
	}
	head, _ := pc.br.Peek(n)
	status, length, fields, ok := scanSimpleResponse(head, pc.fields[:0])
	pc.fields = fields[:0]
	if !ok {
		return nil
	}
	hs := string(head)
	vals := make([]string, len(fields))
	var keys [maxSimpleFields]string
	for i, f := range fields {
		k := http.CanonicalHeaderKey(hs[f.k0:f.k1])
		keys[i] = k
		if responseHopHeaders[k] {
			continue
		}
		vals[i] = hs[f.v0:f.v1]
		// The first occurrence in this head replaces what dst held, as
		// the copy from a parsed header map does; later ones add to it.
		if slices.Contains(keys[:i], k) {
			dst[k] = append(dst[k], vals[i])
		} else {
			dst[k] = vals[i : i+1 : i+1]
		}
	}
	pc.br.Discard(n)
	pc.body = fixedBody{br: pc.br, n: length}
	pc.resp = http.Response{StatusCode: status, ContentLength: length, Body: &pc.body}
	return &pc.resp
}

// scanSimpleResponse checks that head is a simple answer and returns its
// status, Content-Length and fields (appended to fields).
func scanSimpleResponse(head []byte, fields []field) (status int, length int64, _ []field, ok bool) {
	const proto = "HTTP/1.1 "
	if len(head) < len(proto)+3 || string(head[:len(proto)]) != proto {
		return 0, 0, fields, false
	}
	for _, c := range head[len(proto) : len(proto)+3] {
		if c < '0' || c > '9' {
			return 0, 0, fields, false
		}
		status = status*10 + int(c-'0')
	}
	if status < 200 || status > 599 || status == http.StatusNoContent || status == http.StatusNotModified {
		return 0, 0, fields, false
	}
	line, rest, ok := cutCRLF(head[len(proto)+3:])
	if !ok || (len(line) > 0 && line[0] != ' ') || !validValue(line) {
		return 0, 0, fields, false
	}
	length = -1
	off := len(head) - len(rest)
	for {
		line, rest, ok = cutCRLF(rest)
		if !ok {
			return 0, 0, fields, false
		}
		if len(line) == 0 {
			break
		}
		f, ok := scanField(line, off)
		if !ok || len(fields) == maxSimpleFields {
			return 0, 0, fields, false
		}
		key, val := line[:f.k1-f.k0], head[f.v0:f.v1]
		switch {
		case asciiEqualFold(key, "Content-Length"):
			if length >= 0 || len(val) == 0 || len(val) > 18 {
				return 0, 0, fields, false
			}
			length = 0
			for _, c := range val {
				if c < '0' || c > '9' {
					return 0, 0, fields, false
				}
				length = length*10 + int64(c-'0')
			}
		case asciiEqualFold(key, "Transfer-Encoding"), asciiEqualFold(key, "Trailer"), asciiEqualFold(key, "Pragma"):
			return 0, 0, fields, false
		case asciiEqualFold(key, "Connection"):
			// Only keep-alive, which names no end-to-end field; close
			// and listed fields are http.ReadResponse's to handle.
			for tok := range bytes.SplitSeq(val, []byte(",")) {
				if tok = bytes.Trim(tok, " \t"); len(tok) > 0 && !asciiEqualFold(tok, "keep-alive") {
					return 0, 0, fields, false
				}
			}
		}
		fields = append(fields, f)
		off = len(head) - len(rest)
	}
	if length < 0 || len(rest) != 0 {
		return 0, 0, fields, false
	}
	return status, length, fields, true
}

// cutCRLF splits b after its first line, which must end in CRLF.
func cutCRLF(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 1 || b[i-1] != '\r' {
		return nil, nil, false
	}
	return b[:i-1], b[i+1:], true
}

// validValue applies textproto's rule for field values: visible ASCII,
// space, tab and obs-text.
func validValue(b []byte) bool {
	for _, c := range b {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// tokenByte reports whether c may appear in a field name (RFC 9110 tchar).
func tokenByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c, d := b[i], s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

// fixedBody reads a body of known length from the connection's buffer.
// Ending early is io.ErrUnexpectedEOF, as for net/http's bodies.
type fixedBody struct {
	br *bufio.Reader
	n  int64
}

func (b *fixedBody) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.br.Read(p)
	b.n -= int64(n)
	if err == io.EOF {
		if b.n > 0 {
			return n, io.ErrUnexpectedEOF
		}
		err = nil
	}
	if err == nil && b.n == 0 {
		err = io.EOF
	}
	return n, err
}

func (b *fixedBody) Close() error { return nil }
