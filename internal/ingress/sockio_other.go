//go:build !linux

package ingress

import (
	"io"
	"net"
)

// newSockIO is c itself off Linux: the raw-call path (sockio_linux.go)
// is written for Linux's socket calls.
func newSockIO(c net.Conn) io.ReadWriter { return c }
