package client

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"testing"
	"time"
)

// An exec session whose command printed nothing could not be ended:
// nothing closed its connection when the context ended, so Ctrl-C left
// the CLI waiting. The session's connection closes with the context.
func TestExecSessionEndsWithItsContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		if _, err := http.ReadRequest(bufio.NewReader(conn)); err != nil {
			return
		}
		conn.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: gantry-stream\r\n\r\n"))
		time.Sleep(30 * time.Second) // a command that prints nothing
	}()
	c, err := New(Config{Server: "http://" + ln.Addr().String(), Token: "x"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sc, closer, err := c.Exec(ctx, "default", "web-x", ExecOptions{Cmd: []string{"sleep", "100"}})
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	read := make(chan error, 1)
	go func() {
		_, _, err := sc.Read()
		read <- err
	}()
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case err := <-read:
		if err == nil {
			t.Fatal("a read after the context ended returned a message")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the session's read still waits 5 s after its context ended")
	}
}
