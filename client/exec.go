package client

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/stream"
)

// ExecOptions describe a command to run in an instance.
type ExecOptions struct {
	Cmd   []string
	TTY   bool
	Stdin bool
	// Width and Height are the terminal's size at the start (with TTY;
	// zero: unknown), so that a program that reads it at once gets it
	// right; later changes go as Resize frames.
	Width, Height uint16
}

// Exec opens an exec session in an instance's container. The returned
// connection carries stream frames; close it when done. ctx bounds the
// whole session, not only its opening: when it ends, the connection is
// closed.
func (c *Client) Exec(ctx context.Context, ns, instance string, opts ExecOptions) (*stream.Conn, io.Closer, error) {
	q := url.Values{"cmd": opts.Cmd}
	if opts.TTY {
		q.Set("tty", "true")
	}
	if opts.Stdin {
		q.Set("stdin", "true")
	}
	if opts.TTY && opts.Width > 0 && opts.Height > 0 {
		q.Set("width", strconv.Itoa(int(opts.Width)))
		q.Set("height", strconv.Itoa(int(opts.Height)))
	}
	k, _ := v1.LookupKind("Instance")
	p, err := ObjectPath(k, ns, instance)
	if err != nil {
		return nil, nil, err
	}
	u, err := c.url(p+"/exec", q)
	if err != nil {
		return nil, nil, err
	}
	// The scheme's port when the server names none, as net/http takes it
	// for every other request.
	addr := u.Host
	if u.Port() == "" {
		port := "80"
		if u.Scheme == "https" {
			port = "443"
		}
		addr = net.JoinHostPort(u.Hostname(), port)
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: connect to %s: %v", v1.ErrUnavailable, addr, err)
	}
	if u.Scheme == "https" {
		tr := c.hc.Transport.(*http.Transport)
		cfg := tr.TLSClientConfig.Clone()
		cfg.ServerName = u.Hostname()
		cfg.NextProtos = []string{"http/1.1"}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, nil, err
		}
		conn = tc
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", stream.Protocol)
	req.Header.Set("User-Agent", c.ua)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, nil, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer conn.Close()
		return nil, nil, decodeError(resp)
	}
	// The session ends with ctx: a read waiting for output that does
	// not come (a remote command that prints nothing) returns then.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	return stream.New(struct {
		io.Reader
		io.Writer
	}{br, conn}), closerFunc(func() error { stop(); return conn.Close() }), nil
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }
