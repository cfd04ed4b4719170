package apiserver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
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
	// The answer is 200 before any agent is asked; what agents would
	// refuse must be refused here (and before whether any can be asked).
	query := r.URL.Query()
	lq, err := v1.ParseLogQuery(query, time.Now())
	if err != nil {
		return fmt.Errorf("%w: %v", v1.ErrInvalid, err)
	}
	if s.proxy == nil {
		return fmt.Errorf("%w: this server cannot reach agents", v1.ErrUnavailable)
	}
	if _, err := store.Get[*v1.App](ctx, s.store, ri.Namespace, ri.Name); err != nil {
		return err
	}
	sel := v1.Selector{{Key: v1.LabelApp, Op: v1.OpEqual, Value: ri.Name}}
	insts, _, err := store.List[*v1.Instance](ctx, s.store, store.ListOptions{Namespace: ri.Namespace, Selector: sel})
	if err != nil {
		return err
	}
	follow := lq.Follow
	if follow {
		// As agents before LogFollow read it (true only).
		query.Set("follow", "true")
	}
	fl, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	rc := http.NewResponseController(w)
	var mu sync.Mutex
	// emit writes one line, within watchWriteTimeout.
	emit := func(l appLogLine) {
		mu.Lock()
		defer mu.Unlock()
		rc.SetWriteDeadline(time.Now().Add(watchWriteTimeout))
		err := enc.Encode(l)
		if err == nil && follow && fl != nil {
			err = rc.Flush()
		}
		if err != nil {
			cancel()
		}
	}
	if follow {
		s.followAppLogs(ctx, r, ri, insts, query, emit)
		return nil
	}
	// Without follow, each instance's lines (in time order, as its agent
	// sends them) go through a small queue to a merge, so the server
	// holds a few lines per instance, not every log of the App.
	var queues []chan appLogLine
	var wg sync.WaitGroup
	for _, inst := range insts {
		if inst.Spec.Node == "" {
			continue
		}
		q := make(chan appLogLine, 64)
		queues = append(queues, q)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(q)
			s.instanceLogs(ctx, r, ri, inst, query, false, func(l appLogLine) bool {
				select {
				case q <- l:
					return true
				case <-ctx.Done():
					return false
				}
			})
		}()
	}
	mergeLogs(ctx, queues, emit)
	wg.Wait()
	return nil
}

// appLogsRelist is how often a follow of an App's logs looks for its
// instances again (and reconnects to one whose stream ended: its agent
// restarted, the connection broke), and how long it goes on reading one
// that was deleted, for the lines its agent has not sent yet.
var appLogsRelist = time.Second

// logFollower follows one instance's log for followAppLogs.
type logFollower struct {
	stop    context.CancelFunc
	gone    time.Time // when the instance was first missed from a list
	first   time.Time // when it was first asked for
	retryAt time.Time // when a stream that ended may be asked for again
	fails   int       // streams in a row that ended with no line
	mu      sync.Mutex
	query   url.Values
	last    time.Time // of the latest line sent
	sent    bool      // the current stream sent a line
	ended   bool      // the stream ended with the instance still there
}

// resume is the query that asks again for what f has not sent: from its
// last line, on the node's clock; or, when it sent none, the first query
// with any sinceSeconds widened by the time since it was first asked, so
// that lines written between the two asks are not lost. The caller holds
// f.mu.
func (f *logFollower) resume(later url.Values) url.Values {
	q := url.Values{}
	switch {
	case !f.last.IsZero():
		for k, v := range later {
			q[k] = v
		}
		q.Set("since", f.last.Format(time.RFC3339Nano))
	default:
		for k, v := range f.query {
			q[k] = v
		}
		v1.WidenSinceSeconds(q, time.Since(f.first))
	}
	return q
}

// followAppLogs follows the logs of an App's instances: those listed when
// the request came (insts), and those made later (a rollout's, a
// replacement's, a scale-up's), from their first line; it stops reading
// an instance's log once the instance is deleted, and reconnects to one
// whose stream ended, from the time of its latest line sent (a line
// written in that same nanosecond after it is not sent). It ends when
// ctx does or the App is deleted.
func (s *Server) followAppLogs(ctx context.Context, r *http.Request, ri *requestInfo, insts []*v1.Instance, query url.Values, emit func(appLogLine)) {
	following := map[string]*logFollower{} // by instance UID
	// An instance made after the request has only new lines: all of
	// them are sent, whatever tail or since asked of the first ones (a
	// sinceSeconds, taken when the agent is asked, would drop the lines
	// written before the instance was found).
	later := url.Values{}
	for k, v := range query {
		if k != "tail" && k != "since" && k != "sinceSeconds" {
			later[k] = v
		}
	}
	var wg sync.WaitGroup
	defer func() {
		for _, f := range following {
			f.stop()
		}
		wg.Wait()
	}()
	start := func(inst *v1.Instance, f *logFollower, q url.Values) {
		ictx, stop := context.WithCancel(ctx)
		f.stop = stop
		if f.first.IsZero() {
			f.first = time.Now()
		}
		f.mu.Lock()
		since := f.last
		f.ended, f.sent = false, false
		f.mu.Unlock()
		// A node that cannot answer is warned of once, not at every
		// attempt.
		quiet := f.fails > 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer stop()
			s.instanceLogs(ictx, r, ri, inst, q, quiet, func(l appLogLine) bool {
				if !l.Time.After(since) && !since.IsZero() {
					return true // sent before the reconnect
				}
				emit(l)
				f.mu.Lock()
				f.last, f.sent = l.Time, true
				f.mu.Unlock()
				return true
			})
			f.mu.Lock()
			f.ended = ictx.Err() == nil
			f.mu.Unlock()
		}()
	}
	sel := v1.Selector{{Key: v1.LabelApp, Op: v1.OpEqual, Value: ri.Name}}
	q := query
	for {
		seen := map[string]bool{}
		for _, inst := range insts {
			uid := inst.Metadata.UID
			seen[uid] = true
			f := following[uid]
			switch {
			case f == nil && inst.Spec.Node != "": // not placed yet: once it is
				f = &logFollower{query: q}
				following[uid] = f
				start(inst, f, q)
			case f != nil:
				f.gone = time.Time{}
				f.mu.Lock()
				ended, sent := f.ended, f.sent
				var resume url.Values
				if ended {
					resume = f.resume(later)
				}
				f.mu.Unlock()
				if !ended {
					break
				}
				// One that keeps ending with nothing (its node is
				// gone or cannot answer) is asked less and less often.
				switch {
				case f.retryAt.IsZero():
					if sent {
						f.fails = 0
					} else {
						f.fails++
					}
					f.retryAt = time.Now().Add(min(appLogsRelist<<min(max(f.fails-1, 0), 5), 30*time.Second))
				case time.Now().After(f.retryAt):
					f.retryAt = time.Time{}
					start(inst, f, resume)
				}
			}
		}
		for uid, f := range following {
			switch {
			case seen[uid]:
			case f.gone.IsZero():
				f.gone = time.Now()
			case time.Since(f.gone) >= appLogsRelist:
				f.stop()
				delete(following, uid)
			}
		}
		q = later
		select {
		case <-ctx.Done():
			return
		case <-time.After(appLogsRelist):
		}
		if _, err := store.Get[*v1.App](ctx, s.store, ri.Namespace, ri.Name); errors.Is(err, v1.ErrNotFound) {
			return
		}
		list, _, err := store.List[*v1.Instance](ctx, s.store, store.ListOptions{Namespace: ri.Namespace, Selector: sel})
		if err != nil {
			continue // the store is away: keep following what is followed
		}
		insts = list
	}
}

// instanceLogs streams the logs of inst from its node into fn, until they
// end, fn returns false or ctx ends. An instance whose node cannot answer
// is left out of the merged logs, not the reason for failing them all.
func (s *Server) instanceLogs(ctx context.Context, r *http.Request, ri *requestInfo, inst *v1.Instance, query url.Values, quiet bool, fn func(appLogLine) bool) {
	log := s.log.With("app", ri.Name, "ns", ri.Namespace, "instance", inst.Metadata.Name, "node", inst.Spec.Node)
	if quiet {
		log = slog.New(slog.DiscardHandler)
	}
	n, err := store.Get[*v1.Node](ctx, s.store, "", inst.Spec.Node)
	if err != nil {
		log.Warn("app logs: instance left out", "err", err)
		return
	}
	// Its own end: a scan that stops for its own reason (a line past
	// the scanner's limit) also stops the node's stream, which may be
	// waiting for a line to write rather than writing one.
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	path := "/instances/" + ri.Namespace + "/" + inst.Metadata.Name + "/logs"
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(s.nodeLogs(&pipeResponse{header: http.Header{}, w: pw}, r.WithContext(ctx), n, path, query))
	}()
	// The read end goes first: a node writing into the pipe (which a
	// cancelled context does not stop) then fails and returns, and is
	// waited for.
	defer func() {
		cancel()
		pr.CloseWithError(context.Canceled)
		<-done
	}()
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var l appLogLine
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Time.IsZero() {
			continue
		}
		l.Instance = inst.Metadata.Name
		if !fn(l) {
			return
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		log.Warn("app logs: instance left out", "err", err)
	}
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
