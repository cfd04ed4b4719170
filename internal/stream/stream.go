// Package stream frames the bidirectional byte streams of `gantry exec`
// over one upgraded HTTP connection: stdin, stdout, stderr, terminal
// resizes and the exit code travel as typed frames. The agent speaks it to
// the CLI; the API server only forwards the upgraded connection.
package stream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Protocol is the value of the Upgrade header.
const Protocol = "gantry-exec/1"

// Frame types.
const (
	Stdin      byte = 0
	Stdout     byte = 1
	Stderr     byte = 2
	Resize     byte = 3 // payload: width, height as big-endian uint16
	CloseStdin byte = 4
	Exit       byte = 5 // payload: exit code as big-endian int32
	Error      byte = 6 // payload: message
)

// MaxFrame bounds one frame's payload.
const MaxFrame = 1 << 20

// Conn reads and writes frames. Writes are safe from several goroutines.
type Conn struct {
	r  io.Reader
	w  io.Writer
	mu sync.Mutex
}

// New frames a connection.
func New(rw io.ReadWriter) *Conn { return &Conn{r: rw, w: rw} }

// Write sends one frame.
func (c *Conn) Write(t byte, payload []byte) error {
	if len(payload) > MaxFrame {
		return fmt.Errorf("frame of %d bytes is too large", len(payload))
	}
	var hdr [5]byte
	hdr[0] = t
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := c.w.Write(payload)
	return err
}

// Read receives one frame.
func (c *Conn) Read() (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > MaxFrame {
		return 0, nil, errors.New("frame too large")
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(c.r, p); err != nil {
		return 0, nil, err
	}
	return hdr[0], p, nil
}

// Writer returns an io.Writer that sends each write as a frame of type t.
func (c *Conn) Writer(t byte) io.Writer { return frameWriter{c, t} }

type frameWriter struct {
	c *Conn
	t byte
}

func (f frameWriter) Write(p []byte) (int, error) {
	for off := 0; off < len(p); off += MaxFrame {
		end := min(off+MaxFrame, len(p))
		if err := f.c.Write(f.t, p[off:end]); err != nil {
			return off, err
		}
	}
	return len(p), nil
}

// ExitPayload encodes an exit code.
func ExitPayload(code int) []byte {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(int32(code)))
	return b[:]
}

// ParseExit decodes an exit code.
func ParseExit(p []byte) int {
	if len(p) != 4 {
		return -1
	}
	return int(int32(binary.BigEndian.Uint32(p)))
}

// ResizePayload encodes a terminal size.
func ResizePayload(w, h uint16) []byte {
	var b [4]byte
	binary.BigEndian.PutUint16(b[:2], w)
	binary.BigEndian.PutUint16(b[2:], h)
	return b[:]
}

// ParseResize decodes a terminal size.
func ParseResize(p []byte) (w, h uint16, ok bool) {
	if len(p) != 4 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint16(p[:2]), binary.BigEndian.Uint16(p[2:]), true
}
