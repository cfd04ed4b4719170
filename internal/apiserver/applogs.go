package apiserver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/store"
)

// appLogLine is one line of an App's merged logs.
type appLogLine struct {
	Time     time.Time `json:"time"`
	Stream   string    `json:"stream"`
	Line     string    `json:"line"`
	Instance string    `json:"instance"`
}

// pipeResponse lets a node's log handler write into a pipe. The body of
// an answer other than 200 is kept, not piped, to become its error.
type pipeResponse struct {
	header http.Header
	w      *io.PipeWriter
	status int
	body   bytes.Buffer // of an answer other than 200
}

func (p *pipeResponse) Header() http.Header { return p.header }

func (p *pipeResponse) WriteHeader(code int) {
	if p.status == 0 {
		p.status = code
	}
}

func (p *pipeResponse) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	if p.status != http.StatusOK {
		if p.body.Len() < 64<<10 {
			p.body.Write(b)
		}
		return len(b), nil
	}
	return p.w.Write(b)
}

func (p *pipeResponse) Flush() {}

// err turns an answer other than 200 into an error, with the message of
// its v1.Status body.
func (p *pipeResponse) err() error {
	if p.status == 0 || p.status == http.StatusOK {
		return nil
	}
	msg := strings.TrimSpace(p.body.String())
	var st v1.Status
	if json.Unmarshal(p.body.Bytes(), &st) == nil && st.Message != "" {
		msg = st.Message
	}
	return fmt.Errorf("agent answered %d: %s", p.status, msg)
}

// checkLogQuery refuses the tail and since of a logs request that an
// agent would refuse, before any answer is sent.
func checkLogQuery(q url.Values) error {
	if v := q.Get("tail"); v != "" {
		if n, err := strconv.Atoi(v); err != nil || n < 0 {
			return fmt.Errorf("%w: tail=%q: send the number of last lines to return (0 or more)", v1.ErrInvalid, v)
		}
	}
	if v := q.Get("since"); v != "" {
		if _, err := time.Parse(time.RFC3339Nano, v); err != nil {
			return fmt.Errorf("%w: since=%q: send an RFC 3339 time, such as 2025-01-02T15:04:05Z", v1.ErrInvalid, v)
		}
	}
	return nil
}

// appLogs merges the logs of every instance of an App, each line naming
// its instance: in time order without follow, as they come with it.
func (s *Server) appLogs(w http.ResponseWriter, r *http.Request, ri *requestInfo) error {
	// A write that cannot go out (the client stopped reading) cancels
	// ctx, and with it the request to every agent; so does the caller
	// losing the right to read them.
	r, stop, err := s.guardStream(r, ri)
	if err != nil {
		return err
	}
	defer stop()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	r = r.WithContext(ctx)
	if s.proxy == nil {
		return fmt.Errorf("%w: this server cannot reach agents", v1.ErrUnavailable)
	}
	// The answer is 200 before any agent is asked; what agents would
	// refuse must be refused here.
	query := r.URL.Query()
	if err := checkLogQuery(query); err != nil {
		return err
	}
	if _, err := store.Get[*v1.App](ctx, s.store, ri.Namespace, ri.Name); err != nil {
		return err
	}
	sel := v1.Selector{{Key: v1.LabelApp, Op: v1.OpEqual, Value: ri.Name}}
	insts, _, err := store.List[*v1.Instance](ctx, s.store, store.ListOptions{Namespace: ri.Namespace, Selector: sel})
	if err != nil {
		return err
	}
	follow := query.Get("follow") == "true"
	fl, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	var mu sync.Mutex
	// Without follow, each instance's lines (in time order, as its agent
	// sends them) go through a small queue to a merge, so the server
	// holds a few lines per instance, not every log of the App.
	var queues []chan appLogLine
	enc := json.NewEncoder(w)
	rc := http.NewResponseController(w)
	// emit writes one line, within watchWriteTimeout.
	emit := func(l appLogLine) {
		rc.SetWriteDeadline(time.Now().Add(watchWriteTimeout))
		err := enc.Encode(l)
		if err == nil && follow && fl != nil {
			err = rc.Flush()
		}
		if err != nil {
			cancel()
		}
	}
	var wg sync.WaitGroup
	for _, inst := range insts {
		nodeName := inst.Spec.Node
		if nodeName == "" {
			continue
		}
		// An instance whose node cannot answer is left out of the
		// merged logs, not the reason for failing them all.
		log := s.log.With("app", ri.Name, "ns", ri.Namespace, "instance", inst.Metadata.Name, "node", nodeName)
		n, err := store.Get[*v1.Node](ctx, s.store, "", nodeName)
		if err != nil {
			log.Warn("app logs: instance left out", "err", err)
			continue
		}
		pr, pw := io.Pipe()
		path := "/instances/" + ri.Namespace + "/" + inst.Metadata.Name + "/logs"
		var q chan appLogLine
		if !follow {
			q = make(chan appLogLine, 64)
			queues = append(queues, q)
		}
		wg.Add(2)
		go func() {
			defer wg.Done()
			pw.CloseWithError(s.nodeLogs(&pipeResponse{header: http.Header{}, w: pw}, r, n, path, query))
		}()
		go func() {
			defer wg.Done()
			defer pr.Close()
			if q != nil {
				defer close(q)
			}
			sc := bufio.NewScanner(pr)
			sc.Buffer(make([]byte, 64<<10), 4<<20)
			for sc.Scan() {
				var l appLogLine
				if json.Unmarshal(sc.Bytes(), &l) != nil || l.Time.IsZero() {
					continue
				}
				l.Instance = inst.Metadata.Name
				if q != nil {
					select {
					case q <- l:
					case <-ctx.Done():
						return
					}
					continue
				}
				mu.Lock()
				emit(l)
				mu.Unlock()
			}
			if err := sc.Err(); err != nil && ctx.Err() == nil {
				log.Warn("app logs: instance left out", "err", err)
			}
		}()
	}
	if !follow {
		mergeLogs(ctx, queues, emit)
	}
	wg.Wait()
	return nil
}

// mergeLogs writes the lines of queues, each in time order, in time order
// (the earlier queue first among equal times) until every queue is closed
// or ctx ends.
func mergeLogs(ctx context.Context, queues []chan appLogLine, emit func(appLogLine)) {
	heads := make([]appLogLine, len(queues))
	open := make([]bool, len(queues))
	next := func(i int) {
		select {
		case heads[i], open[i] = <-queues[i]:
		case <-ctx.Done():
			open[i] = false
		}
	}
	for i := range queues {
		next(i)
	}
	for {
		first := -1
		for i := range queues {
			if open[i] && (first < 0 || heads[i].Time.Before(heads[first].Time)) {
				first = i
			}
		}
		if first < 0 {
			return
		}
		emit(heads[first])
		next(first)
	}
}

// nodeLogs asks a node for an instance's logs into resp and returns the
// error of its answer. The reverse proxy to a remote agent aborts with
// http.ErrAbortHandler when the agent's stream breaks: meant to end a
// handler, it would end the server from this goroutine, so it becomes the
// instance's error.
func (s *Server) nodeLogs(resp *pipeResponse, r *http.Request, n *v1.Node, path string, q url.Values) (err error) {
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				panic(v)
			}
			err = errors.New("the agent's stream broke")
		}
	}()
	s.proxy.ServeNode(resp, r, n, path, q)
	return resp.err()
}
