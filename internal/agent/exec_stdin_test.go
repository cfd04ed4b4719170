package agent

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/runtime"
	"github.com/gantry-dev/gantry/internal/stream"
)

// headRuntime runs every command like `head -c 1`: it reads its stdin
// once, if it has one, and exits without reading the rest.
type headRuntime struct{ Runtime }

func (headRuntime) Inspect(context.Context, string) (runtime.Container, error) {
	return runtime.Container{Status: runtime.StatusRunning}, nil
}

func (headRuntime) Exec(_ context.Context, _ string, opts runtime.ExecOptions) (int, error) {
	if opts.Stdin != nil {
		opts.Stdin.Read(make([]byte, 1))
	}
	time.Sleep(100 * time.Millisecond)
	return 0, nil
}

// `yes | gantry exec -i INST -- head -1`: the command exits while the
// client still sends stdin. The frame reader blocked for ever writing to
// a pipe nobody read any more, and so did one that got stdin frames for a
// command started without stdin; each such exec left a goroutine behind
// after its connection closed.
func TestExecStdinAfterTheCommandLeftNoReaderBehind(t *testing.T) {
	a := &Agent{cfg: Config{NodeName: "n1"}, rt: headRuntime{}, log: slog.New(slog.DiscardHandler)}
	mux := http.NewServeMux()
	mux.HandleFunc("/instances/{ns}/{name}/exec", a.serveExec)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	for _, query := range []string{"cmd=head&stdin=true", "cmd=head"} {
		conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST /instances/team/web-1/exec?%s HTTP/1.1\r\nHost: x\r\nUpgrade: %s\r\nConnection: Upgrade\r\n\r\n", query, stream.Protocol)
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("%s: upgrade: %v %v", query, resp, err)
		}
		sc := stream.New(struct {
			io.Reader
			io.Writer
		}{br, conn})
		sc.Write(stream.Stdin, []byte("y\n"))
		sc.Write(stream.Stdin, []byte("y\n"))
		var exited bool
		for !exited {
			typ, _, err := sc.Read()
			if err != nil {
				t.Fatalf("%s: connection ended before the exit frame: %v", query, err)
			}
			exited = typ == stream.Exit
		}
		sc.Write(stream.Stdin, []byte("y\n"))
		conn.Close()
	}

	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		n := goruntime.Stack(buf, true)
		stuck := strings.Count(string(buf[:n]), "(*Agent).serveExec")
		if stuck == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d serveExec goroutines still run after both execs ended and their connections closed:\n%s", stuck, buf[:n])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
