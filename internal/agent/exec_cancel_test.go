package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/runtime"
	"github.com/gantry-dev/gantry/internal/stream"
)

// sleepRuntime runs every command until its context ends.
type sleepRuntime struct{ Runtime }

func (sleepRuntime) Inspect(context.Context, string) (runtime.Container, error) {
	return runtime.Container{Status: runtime.StatusRunning}, nil
}

func (sleepRuntime) Exec(ctx context.Context, _ string, _ runtime.ExecOptions) (int, error) {
	<-ctx.Done()
	return -1, ctx.Err()
}

// The API server serving an in-process agent ends an exec session whose
// caller lost the right to it by cancelling the request's context. The
// agent ran the command under a context of its own, so the session went
// on until its client left.
func TestExecEndsWithItsRequestsContext(t *testing.T) {
	a := &Agent{cfg: Config{NodeName: "n1"}, rt: sleepRuntime{}, log: slog.New(slog.DiscardHandler)}
	cancels := make(chan context.CancelCauseFunc, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithCancelCause(r.Context())
		cancels <- cancel
		r.SetPathValue("ns", "team")
		r.SetPathValue("name", "web-1")
		a.serveExec(w, r.WithContext(ctx))
	}))
	defer srv.Close()

	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /instances/team/web-1/exec?cmd=sleep HTTP/1.1\r\nHost: x\r\nUpgrade: %s\r\nConnection: Upgrade\r\n\r\n", stream.Protocol)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	(<-cancels)(errors.New("stream ended: its caller may no longer make it"))
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	sc := stream.New(struct {
		io.Reader
		io.Writer
	}{br, conn})
	for {
		typ, p, err := sc.Read()
		if err != nil {
			t.Fatalf("the session ended without an error frame: %v", err)
		}
		if typ == stream.Error {
			if !strings.Contains(string(p), "may no longer make it") {
				t.Fatalf("error frame %q does not say why the session ended", p)
			}
			return
		}
	}
}
