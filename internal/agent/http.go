package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/logfile"
	"github.com/gantry-dev/gantry/internal/runtime"
	"github.com/gantry-dev/gantry/internal/stream"
)

// LogLine is one line of `gantry logs` as the agent streams it.
type LogLine struct {
	Time     time.Time `json:"time"`
	Stream   string    `json:"stream"`
	Line     string    `json:"line"`
	Instance string    `json:"instance,omitempty"`
}

// Handler serves what only the node has: instance logs and exec. The API
// server authorizes requests before it forwards them here.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /instances/{ns}/{name}/logs", a.serveLogs)
	mux.HandleFunc("/instances/{ns}/{name}/exec", a.serveExec)
	return mux
}

// httpError answers as the API server does: the status and reason of
// kind (one of the v1 error kinds, or nil for an internal error) in a
// v1.Status body.
func httpError(w http.ResponseWriter, kind error, msg string) {
	code, reason := v1.StatusFor(kind)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v1.Status{Code: code, Reason: reason, Message: msg})
}

func (a *Agent) serveLogs(w http.ResponseWriter, r *http.Request) {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	q := r.URL.Query()
	lq, err := v1.ParseLogQuery(q, time.Now())
	if err != nil {
		httpError(w, v1.ErrInvalid, err.Error())
		return
	}
	opts := logfile.ReadOptions{Follow: lq.Follow, Tail: lq.Tail, Since: lq.Since}
	if opts.Follow {
		opts.PollInterval = 50 * time.Millisecond
	}
	rd, err := logfile.Open(a.LogPath(ns, name), opts)
	if err != nil {
		httpError(w, nil, err.Error())
		return
	}
	defer rd.Close()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	if fl != nil {
		fl.Flush()
	}
	enc := json.NewEncoder(w)
	ctx := r.Context()
	lastFlush := time.Now()
	for {
		var e logfile.Entry
		var err error
		if opts.Follow {
			// Flush whatever is buffered before blocking for more.
			nctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			e, err = rd.Next(nctx)
			cancel()
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				if fl != nil {
					fl.Flush()
					lastFlush = time.Now()
				}
				continue
			}
		} else {
			e, err = rd.Next(ctx)
		}
		if err != nil {
			if fl != nil {
				fl.Flush()
			}
			return
		}
		if enc.Encode(LogLine{Time: e.Time, Stream: e.Stream, Line: e.Line}) != nil {
			return
		}
		// A busy log never goes quiet for the idle flush above: flush at
		// least every 100ms so that followers see lines within that.
		if opts.Follow && fl != nil && time.Since(lastFlush) >= 100*time.Millisecond {
			fl.Flush()
			lastFlush = time.Now()
		}
	}
}

// serveExec runs a command in an instance's container over an upgraded
// connection carrying stream frames.
func (a *Agent) serveExec(w http.ResponseWriter, r *http.Request) {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	q := r.URL.Query()
	cmd := q["cmd"]
	if len(cmd) == 0 {
		httpError(w, v1.ErrInvalid, "give the command to run: gantry exec INSTANCE -- CMD [ARGS…]")
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), stream.Protocol) {
		httpError(w, v1.ErrInvalid, "exec needs an upgraded connection (Upgrade: "+stream.Protocol+")")
		return
	}
	id := containerID(ns + "/" + name)
	c, err := a.rt.Inspect(r.Context(), id)
	if err != nil || c.Status != runtime.StatusRunning {
		httpError(w, v1.ErrConflict, fmt.Sprintf("instance %s is not running on node %s", name, a.cfg.NodeName))
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		httpError(w, nil, "connection cannot be upgraded")
		return
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\n\r\n", stream.Protocol)
	brw.Flush()
	sc := stream.New(struct {
		io.Reader
		io.Writer
	}{bufio.NewReader(brw), conn})
	tty := q.Get("tty") == "true"
	withStdin := q.Get("stdin") == "true"
	stdinR, stdinW := io.Pipe()
	// Once the command is done nobody reads its stdin: closing the read
	// side makes the frame reader's writes fail rather than block it for
	// ever (`yes | gantry exec -i INST -- head -1`).
	defer stdinR.Close()
	resize := make(chan runtime.Size, 4)
	// The request's context outlives the hijack; the API server serving
	// this in-process cancels it when the caller loses the right to exec.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		defer stdinW.Close()
		for {
			t, p, err := sc.Read()
			if err != nil {
				cancel()
				return
			}
			switch t {
			case stream.Stdin:
				if withStdin {
					stdinW.Write(p)
				}
			case stream.CloseStdin:
				stdinW.Close()
			case stream.Resize:
				if wd, ht, ok := stream.ParseResize(p); ok {
					select {
					case resize <- runtime.Size{Width: wd, Height: ht}:
					default:
					}
				}
			}
		}
	}()
	opts := runtime.ExecOptions{Cmd: cmd, Tty: tty, Stdout: sc.Writer(stream.Stdout), Stderr: sc.Writer(stream.Stderr), Resize: resize}
	if tty {
		opts.Size = initialSize(q)
	}
	if withStdin {
		opts.Stdin = stdinR
	}
	code, err := a.rt.Exec(ctx, id, opts)
	if err != nil {
		if c := context.Cause(r.Context()); c != nil {
			err = c // why the API server ended it
		}
		sc.Write(stream.Error, []byte(err.Error()))
		return
	}
	sc.Write(stream.Exit, stream.ExitPayload(code))
}

// initialSize is the terminal size an exec's request gives (width and
// height, in characters), or nil when it gives none that makes sense.
func initialSize(q url.Values) *runtime.Size {
	w, errW := strconv.ParseUint(q.Get("width"), 10, 16)
	h, errH := strconv.ParseUint(q.Get("height"), 10, 16)
	if errW != nil || errH != nil || w == 0 || h == 0 {
		return nil
	}
	return &runtime.Size{Width: uint16(w), Height: uint16(h)}
}
