package loadgen

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// respParser reads one HTTP/1.1 response at a time from the bytes a
// connection delivers, in whatever pieces they come. The event loop
// client uses it instead of http.ReadResponse, which wants a blocking
// reader. It keeps only what it needs: the status, one marker header,
// whether the server will close the connection, and the body's length.
type respParser struct {
	head   bool   // a HEAD request: the response has no body
	marker string // header whose value is kept, lower case; "" for none
	state  parseState
	buf    []byte // the head, or a chunk-size or trailer line, so far
	status int
	value  string // the marker header's value
	close  bool   // the server closes the connection after this response
	remain int64  // body bytes left in the body or in the current chunk
	body   int64  // body bytes seen
	got    bool   // a byte of the response has arrived
}

type parseState uint8

const (
	stHead parseState = iota
	stLength
	stUntilClose
	stChunkSize
	stChunkData
	stChunkEnd // the CRLF after a chunk's data
	stTrailer
	stDone
)

// maxHead bounds a response head and a chunk or trailer line.
const maxHead = 64 << 10

// errIncomplete is a connection that ended inside a response.
var errIncomplete = fmt.Errorf("response cut short: %w", io.ErrUnexpectedEOF)

func (p *respParser) reset(head bool, marker string) {
	*p = respParser{head: head, marker: marker, buf: p.buf[:0]}
}

// started reports whether any byte of the response has arrived (an
// interim 1xx answer included, after which the state is stHead again).
func (p *respParser) started() bool { return p.got }

// feed consumes bytes of the response and reports how many it used and
// whether the response is complete; bytes after a complete response are
// not used.
func (p *respParser) feed(b []byte) (int, bool, error) {
	p.got = p.got || len(b) > 0
	used := 0
	for used < len(b) && p.state != stDone {
		n, err := p.step(b[used:])
		used += n
		if err != nil {
			return used, false, err
		}
	}
	return used, p.state == stDone, nil
}

func (p *respParser) step(b []byte) (int, error) {
	switch p.state {
	case stHead:
		// Look for the blank line from a little before the new bytes,
		// in case it straddles two reads.
		from := max(0, len(p.buf)-3)
		p.buf = append(p.buf, b...)
		i := bytes.Index(p.buf[from:], []byte("\r\n\r\n"))
		if i < 0 {
			if len(p.buf) > maxHead {
				return len(b), fmt.Errorf("response head longer than %d bytes", maxHead)
			}
			return len(b), nil
		}
		end := from + i + 4
		used := len(b) - (len(p.buf) - end)
		if end > maxHead {
			return used, fmt.Errorf("response head longer than %d bytes", maxHead)
		}
		head := p.buf[:end]
		if err := p.parseHead(head); err != nil {
			return used, err
		}
		p.buf = p.buf[:0]
		return used, nil
	case stLength, stChunkData:
		n := int64(len(b))
		if n > p.remain {
			n = p.remain
		}
		p.remain -= n
		p.body += n
		if p.remain == 0 {
			if p.state == stChunkData {
				p.state = stChunkEnd
			} else {
				p.state = stDone
			}
		}
		return int(n), nil
	case stUntilClose:
		p.body += int64(len(b))
		return len(b), nil
	case stChunkSize, stChunkEnd, stTrailer:
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			p.buf = append(p.buf, b...)
			if len(p.buf) > maxHead {
				return len(b), errors.New("chunk line too long")
			}
			return len(b), nil
		}
		line := append(p.buf, b[:i+1]...)
		p.buf = line[:0]
		return i + 1, p.line(line)
	}
	return 0, nil
}

// line handles one complete line of the chunked framing.
func (p *respParser) line(line []byte) error {
	line, ok := bytes.CutSuffix(line, []byte("\r\n"))
	if !ok {
		return errors.New("chunked body: line not ended by CRLF")
	}
	switch p.state {
	case stChunkEnd:
		if len(line) != 0 {
			return errors.New("chunked body: data longer than its chunk size")
		}
		p.state = stChunkSize
	case stChunkSize:
		size, _, _ := bytes.Cut(line, []byte(";"))
		size = bytes.TrimRight(size, " \t")
		n, err := strconv.ParseInt(string(size), 16, 64)
		if err != nil || n < 0 || len(size) == 0 || size[0] == '+' || size[0] == '-' {
			return fmt.Errorf("chunked body: bad chunk size %q", truncate(size))
		}
		if n == 0 {
			p.state = stTrailer
			return nil
		}
		p.remain, p.state = n, stChunkData
	case stTrailer:
		if len(line) == 0 {
			p.state = stDone
		}
	}
	return nil
}

// parseHead reads the status line and the headers that matter here.
func (p *respParser) parseHead(head []byte) error {
	lines := bytes.Split(head[:len(head)-4], []byte("\r\n"))
	for _, l := range lines {
		// Lines end with CRLF and nothing else (net/http would split at
		// a bare LF and read a different response).
		if bytes.ContainsAny(l, "\r\n") {
			return fmt.Errorf("response head has a bare CR or LF in %q", truncate(l))
		}
	}
	status := lines[0]
	if len(status) < 12 || !bytes.HasPrefix(status, []byte("HTTP/1.")) || (status[7] != '0' && status[7] != '1') || status[8] != ' ' || (len(status) > 12 && status[12] != ' ') {
		return fmt.Errorf("bad status line %q", truncate(status))
	}
	code, err := strconv.Atoi(string(status[9:12]))
	if err != nil || code < 100 {
		return fmt.Errorf("bad status code in %q", truncate(status))
	}
	p.status = code
	keepAlive := status[7] == '1'
	length, chunked := int64(-1), false
	for _, l := range lines[1:] {
		name, value, ok := bytes.Cut(l, []byte(":"))
		if !ok || len(name) == 0 || bytes.ContainsAny(name, " \t") {
			return fmt.Errorf("bad header line %q", truncate(l))
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || n < 0 || value[0] == '+' {
				return fmt.Errorf("bad Content-Length %q", truncate(value))
			}
			if length >= 0 && length != n {
				return errors.New("two different Content-Length headers")
			}
			length = n
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			// HTTP/1.0 has no transfer codings; net/http ignores the
			// header there too.
			chunked = status[7] == '1' && hasToken(value, "chunked")
		case bytes.EqualFold(name, []byte("Connection")):
			if hasToken(value, "close") {
				keepAlive = false
			} else if hasToken(value, "keep-alive") {
				keepAlive = true
			}
		}
		if p.marker != "" && p.value == "" && bytes.EqualFold(name, []byte(p.marker)) {
			p.value = string(value)
		}
	}
	p.close = !keepAlive
	switch {
	case code == 101:
		return errors.New("unexpected 101 Switching Protocols")
	case code < 200:
		// An interim response; the real one follows.
		p.status, p.value, p.close = 0, "", false
		return nil
	case p.head || code == 204 || code == 304:
		p.state = stDone
	case chunked:
		p.state = stChunkSize
	case length == 0:
		p.state = stDone
	case length > 0:
		p.state, p.remain = stLength, length
	default:
		p.state, p.close = stUntilClose, true
	}
	return nil
}

// eof tells the parser that the connection ended; a body that runs to
// the end of the connection is then complete.
func (p *respParser) eof() error {
	if p.state == stUntilClose {
		p.state = stDone
		return nil
	}
	if p.state == stDone {
		return nil
	}
	return errIncomplete
}

func hasToken(v []byte, token string) bool {
	for _, t := range bytes.Split(v, []byte(",")) {
		if bytes.EqualFold(bytes.TrimSpace(t), []byte(token)) {
			return true
		}
	}
	return false
}

func truncate(b []byte) string {
	if len(b) > 80 {
		return string(b[:80]) + "…"
	}
	return string(b)
}
