package scheduler

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// ErrUnschedulable is what errors.Is finds in Place's error when no node
// can take the request.
var ErrUnschedulable = errors.New("no node can take the instance")

// Place picks the node for r: of the nodes that pass every Filter, the one
// the request's Scorer rates highest, ties going to the node whose name
// sorts first so that the same snapshot always gives the same answer.
// When no node fits it returns a *NoFitError explaining why, per reason.
//
// Place scores every feasible node rather than a sample: at 5,000 nodes a
// full pass costs tens of microseconds (see BenchmarkPlace), so there is no
// placement quality to trade for speed. It does not change the snapshot;
// the caller records the decision with Assign.
func Place(s *Snapshot, r *Request) (string, error) {
	spread := r.Placement == v1.PlacementSpread
	if spread && r.App != "" {
		// Lay the app's per-node counts out by slot so the loop below
		// reads them with an index instead of a map lookup per node.
		for i, c := range s.apps[r.App] {
			s.sameApp[i] = c
		}
		defer clear(s.sameApp)
	}
	best, bestScore := int32(-1), -1.0
	for _, i := range s.candidates(r.Constraints) {
		n := &s.nodes[i]
		if !feasible(n, r) {
			continue
		}
		// Direct calls rather than ScorerFor's func value, so the
		// compiler can inline the scorer into this loop.
		var sc float64
		if spread {
			sc = SpreadScore(n, r, int(s.sameApp[i]))
		} else {
			sc = BinpackScore(n, r, 0)
		}
		if best < 0 || sc > bestScore || (sc == bestScore && n.Name < s.nodes[best].Name) {
			best, bestScore = i, sc
		}
	}
	if best < 0 {
		return "", s.explain(r)
	}
	return s.nodes[best].Name, nil
}

// NoFitError says why no node could take a request: every registered node
// is counted under the first Filter it failed.
type NoFitError struct {
	// Nodes is how many nodes were considered.
	Nodes int
	// Reasons are the distinct reasons, most common first.
	Reasons []ReasonCount
}

// ReasonCount is one reason and how many nodes gave it.
type ReasonCount struct {
	Reason string
	Nodes  int
}

// Error reads like "0/3 nodes available: 2 insufficient memory (need 512Mi,
// most free 256Mi), 1 did not match constraint disk=ssd". It becomes the
// Pending instance's status message, so it names what to change.
func (e *NoFitError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "0/%d nodes available: ", e.Nodes)
	if e.Nodes == 0 {
		b.WriteString("no nodes are registered; start a gantry agent to add one")
		return b.String()
	}
	for i, rc := range e.Reasons {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Itoa(rc.Nodes))
		b.WriteByte(' ')
		b.WriteString(rc.Reason)
	}
	return b.String()
}

// Is makes errors.Is(err, ErrUnschedulable) true.
func (e *NoFitError) Is(target error) bool { return target == ErrUnschedulable }

// explain runs the Filters one by one over every node to say why each one
// turned the request down. It is the slow path, taken only when nothing
// fits.
func (s *Snapshot) explain(r *Request) *NoFitError {
	byReason := map[string]int{}
	var freeCPU v1.CPU = -1
	var freeMem v1.Bytes = -1
	// Thousands of nodes failing one constraint give one text; building
	// it once per constraint keeps this path from allocating per node.
	constraintWhy := make([]string, len(r.Constraints))
	all := s.candidates(nil)
	for _, i := range all {
		n := &s.nodes[i]
		for _, f := range Filters {
			if f.Fits(n, r) {
				continue
			}
			if f.Name == "constraints" {
				for k, c := range r.Constraints {
					if !c.Matches(n.Labels) {
						if constraintWhy[k] == "" {
							constraintWhy[k] = f.Why(n, r)
						}
						byReason[constraintWhy[k]]++
						break
					}
				}
				break
			}
			byReason[f.Why(n, r)]++
			switch f.Name {
			case "memory":
				freeMem = max(freeMem, n.FreeMemory(), 0)
			case "cpu":
				freeCPU = max(freeCPU, n.FreeCPU(), 0)
			}
			break
		}
	}
	e := &NoFitError{Nodes: len(all)}
	for reason, c := range byReason {
		switch reason {
		case "insufficient memory":
			reason = fmt.Sprintf("%s (need %s, most free %s)", reason, formatBytes(r.Memory), formatBytes(freeMem))
		case "insufficient cpu":
			reason = fmt.Sprintf("%s (need %s, most free %s)", reason, r.CPU, freeCPU)
		}
		e.Reasons = append(e.Reasons, ReasonCount{Reason: reason, Nodes: c})
	}
	slices.SortFunc(e.Reasons, func(a, b ReasonCount) int {
		if c := cmp.Compare(b.Nodes, a.Nodes); c != 0 {
			return c
		}
		return strings.Compare(a.Reason, b.Reason)
	})
	return e
}

// formatBytes writes a size in the units users write in manifests,
// rounding to one decimal when it is not a whole number of them.
func formatBytes(b v1.Bytes) string {
	units := []struct {
		suffix string
		size   v1.Bytes
	}{{"Ti", 1 << 40}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}}
	for _, u := range units {
		if b >= u.size {
			if b%u.size == 0 {
				return strconv.FormatInt(int64(b/u.size), 10) + u.suffix
			}
			return strconv.FormatFloat(float64(b)/float64(u.size), 'f', 1, 64) + u.suffix
		}
	}
	return b.String()
}
