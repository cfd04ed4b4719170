package apiserver

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
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

// pipeResponse lets a node's log handler write into a pipe.
type pipeResponse struct {
	header http.Header
	w      *io.PipeWriter
	status int
}

func (p *pipeResponse) Header() http.Header         { return p.header }
func (p *pipeResponse) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p *pipeResponse) WriteHeader(code int)        { p.status = code }
func (p *pipeResponse) Flush()                      {}

// appLogs merges the logs of every instance of an App, each line naming
// its instance: in time order without follow, as they come with it.
func (s *Server) appLogs(w http.ResponseWriter, r *http.Request, ri *requestInfo) error {
	ctx := r.Context()
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
	follow := r.URL.Query().Get("follow") == "true"
	fl, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	var mu sync.Mutex
	var all []appLogLine
	enc := json.NewEncoder(w)
	var wg sync.WaitGroup
	for _, inst := range insts {
		nodeName := inst.Spec.Node
		if nodeName == "" {
			continue
		}
		n, err := store.Get[*v1.Node](ctx, s.store, "", nodeName)
		if err != nil {
			continue
		}
		pr, pw := io.Pipe()
		path := "/instances/" + ri.Namespace + "/" + inst.Metadata.Name + "/logs"
		wg.Add(2)
		go func() {
			defer wg.Done()
			s.proxy.ServeNode(&pipeResponse{header: http.Header{}, w: pw}, r, n, path, r.URL.Query())
			pw.Close()
		}()
		go func() {
			defer wg.Done()
			defer pr.Close()
			sc := bufio.NewScanner(pr)
			sc.Buffer(make([]byte, 64<<10), 4<<20)
			for sc.Scan() {
				var l appLogLine
				if json.Unmarshal(sc.Bytes(), &l) != nil || l.Time.IsZero() {
					continue
				}
				l.Instance = inst.Metadata.Name
				mu.Lock()
				if follow {
					enc.Encode(l)
					if fl != nil {
						fl.Flush()
					}
				} else {
					all = append(all, l)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if !follow {
		sort.SliceStable(all, func(i, j int) bool { return all[i].Time.Before(all[j].Time) })
		for _, l := range all {
			enc.Encode(l)
		}
	}
	return nil
}
