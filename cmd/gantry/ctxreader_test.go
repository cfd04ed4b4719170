package main

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// A command reading standard input (apply -f -, login --token -) that
// sent nothing could not be interrupted: Ctrl-C only cancelled a context
// the read never looked at. The CLI's standard input ends with it.
func TestStdinEndsWithTheContext(t *testing.T) {
	pr, pw := io.Pipe() // nothing is ever written
	defer pw.Close()
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(ctxReader{ctx: ctx, r: pr})
		got <- err
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-got:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("read: %v; want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a read of standard input still waits 5 s after Ctrl-C")
	}
	// Read through, it is standard input as it was.
	b, err := io.ReadAll(ctxReader{ctx: context.Background(), r: strings.NewReader("kind: App\n")})
	if err != nil || string(b) != "kind: App\n" {
		t.Fatalf("%q %v", b, err)
	}
}

// login --token - interrupted while it waited for the token said "give
// --server and --token", as if none had been meant; it ends as
// interrupted.
func TestLoginTokenFromStdinEndsAtCtrlC(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	root := newRootCmd()
	root.SetIn(ctxReader{ctx: ctx, r: pr})
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	root.SetArgs([]string{"--config", t.TempDir() + "/config", "login", "--server", "https://127.0.0.1:7443", "--token", "-"})
	if err := root.ExecuteContext(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("login --token - at Ctrl-C: %v; want it interrupted", err)
	}
}
