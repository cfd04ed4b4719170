package apiserver

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/auth"
	"github.com/gantry-dev/gantry/internal/metrics"
	"github.com/gantry-dev/gantry/internal/store"
)

// WithMetrics serves and fills the metrics window.
func WithMetrics(w *metrics.Window) Option { return func(s *Server) { s.window = w } }

// MetricsResponse is the body of a …/metrics GET.
type MetricsResponse struct {
	Kind      string          `json:"kind"`
	Namespace string          `json:"namespace,omitempty"`
	Name      string          `json:"name"`
	Interval  v1.Duration     `json:"interval"`
	CPULimit  float64         `json:"cpuLimit,omitempty"`
	Points    []metrics.Point `json:"points"`
}

func sinceParam(r *http.Request) (time.Time, error) {
	d := time.Hour
	if v := r.URL.Query().Get("since"); v != "" {
		var err error
		d, err = time.ParseDuration(v)
		if err != nil || d <= 0 {
			return time.Time{}, fmt.Errorf("%w: since must be a duration like 10m", v1.ErrInvalid)
		}
	}
	return time.Now().Add(-d), nil
}

// serveMetrics answers metrics GETs for apps, instances and nodes, and
// takes the agents' reports (POST on nodes/NAME/metrics).
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request, ri *requestInfo) error {
	// What the request is (its method, its since) is judged before
	// whether this server can answer it: a wrong one is 405 or 400
	// wherever it is sent.
	unavailable := fmt.Errorf("%w: metrics are not kept by this server", v1.ErrUnavailable)
	ctx := r.Context()
	if r.Method == http.MethodPost || r.Method == http.MethodPut {
		if ri.Kind.Kind != "Node" {
			return methodNotAllowed(r)
		}
		if id := IdentityFrom(ctx); id.Node != ri.Name {
			return auth.Forbidden(id, ri.attributes(), "only a node's agent reports its metrics")
		}
		if s.window == nil {
			return unavailable
		}
		var rep metrics.Report
		if err := decodeBody(w, r, s.cfg.MaxBodyBytes, &rep); err != nil {
			return err
		}
		rep.Node.Node = ri.Name
		// The window's slots and ages are of the server's clock: a report
		// from a node whose clock is off is moved to when it arrived.
		if by := s.clocks.Align(ri.Name, &rep, time.Now()); by != 0 {
			s.log.Debug("restamped a metrics report", "node", ri.Name, "by", by)
		}
		rep.Instances = s.reported.bound(ctx, s.store, ri.Name, rep.Instances)
		s.window.Add(rep)
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	since, err := sinceParam(r)
	if err != nil {
		return err
	}
	if s.window == nil {
		return unavailable
	}
	resp := MetricsResponse{Kind: ri.Kind.Kind, Namespace: ri.Namespace, Name: ri.Name, Interval: v1.Duration(s.window.Interval())}
	switch ri.Kind.Kind {
	case "App":
		if _, err := store.Get[*v1.App](ctx, s.store, ri.Namespace, ri.Name); err != nil {
			return err
		}
		resp.Points, resp.CPULimit = s.window.App(ri.Namespace, ri.Name, since)
	case "Instance":
		if _, err := store.Get[*v1.Instance](ctx, s.store, ri.Namespace, ri.Name); err != nil {
			return err
		}
		resp.Points = s.window.Instance(ri.Namespace, ri.Name, since)
		if l, ok := s.window.InstanceLatest(ri.Namespace, ri.Name); ok {
			resp.CPULimit = l.CPULimit
		}
	case "Node":
		if _, err := store.Get[*v1.Node](ctx, s.store, "", ri.Name); err != nil {
			return err
		}
		resp.Points = s.window.Node(ri.Name, since)
		if _, c, ok := s.window.NodeLatest(ri.Name); ok {
			resp.CPULimit = c
		}
	default:
		return fmt.Errorf("%w: %s have no metrics", v1.ErrNotFound, ri.Kind.Plural)
	}
	if resp.Points == nil {
		resp.Points = []metrics.Point{}
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// reportedInstances remembers, per node, the instances its agent reported
// that are bound to it, and their App, so that each is looked up in the
// store once rather than at every report.
type reportedInstances struct {
	mu     sync.Mutex
	byNode map[string]map[string]string // namespace/name → App
}

// bound keeps the samples of instances bound to node, with the node and
// App taken from the store rather than from the report: a node's
// credential must not write samples for another node's or another
// namespace's instances (they feed that namespace's autoscaler, alerts
// and charts), nor grow the window with names that do not exist.
func (r *reportedInstances) bound(ctx context.Context, st *store.Store, node string, in []metrics.InstanceSample) []metrics.InstanceSample {
	r.mu.Lock()
	known := r.byNode[node]
	r.mu.Unlock()
	next := make(map[string]string, len(in))
	out := in[:0]
	for _, smp := range in {
		key := smp.Namespace + "/" + smp.Name
		app, ok := known[key]
		if !ok {
			inst, err := store.Get[*v1.Instance](ctx, st, smp.Namespace, smp.Name)
			if err != nil || (inst.Spec.Node != node && inst.Status.Node != node) {
				continue // gone, never there, another node's, or unknown for now
			}
			app = inst.Spec.App
		}
		next[key] = app
		smp.Node, smp.App = node, app
		out = append(out, smp)
	}
	r.mu.Lock()
	if r.byNode == nil {
		r.byNode = map[string]map[string]string{}
	}
	r.byNode[node] = next
	r.mu.Unlock()
	return out
}
