package scheduler

import v1 "github.com/gantry-dev/gantry/api/v1"

// A Scorer rates a feasible node for a request between 0 and 1; Place takes
// the highest. sameApp is how many instances of the request's app the node
// already holds. Scorers are pure functions of their arguments.
type Scorer func(n *NodeInfo, r *Request, sameApp int) float64

// ScorerFor returns the scorer of a placement strategy: spread for
// v1.PlacementSpread, bin-pack otherwise.
func ScorerFor(placement string) Scorer {
	if placement == v1.PlacementSpread {
		return SpreadScore
	}
	return BinpackScore
}

// BinpackScore prefers fuller nodes: it is the node's mean share of CPU and
// memory reserved once r is placed. Filling nodes up keeps whole nodes free
// for large instances and lets idle ones be scaled away.
func BinpackScore(n *NodeInfo, r *Request, _ int) float64 {
	return (share(int64(n.Placed.CPU+r.CPU), int64(n.Allocatable.CPU)) +
		share(int64(n.Placed.Memory+r.Memory), int64(n.Allocatable.Memory))) / 2
}

// spreadLevels is how many same-app counts SpreadScore tells apart; past it
// every node looks equally crowded with the app and emptiness decides.
const spreadLevels = 1000

// SpreadScore prefers nodes with fewer instances of the same app and, among
// those, emptier ones, so that losing one node loses as few of an app's
// instances as possible. The app count is the integer part of the scale and
// emptiness lives in the lower half of one step, so one fewer same-app
// instance always outweighs any difference in emptiness.
func SpreadScore(n *NodeInfo, r *Request, sameApp int) float64 {
	crowd := min(max(sameApp, 0), spreadLevels)
	empty := 1 - BinpackScore(n, r, sameApp)
	return (float64(spreadLevels-crowd) + empty/2) / (spreadLevels + 0.5)
}

// share is used/total capped at 1 (used is never negative); a resource a
// node does not offer counts as full.
func share(used, total int64) float64 {
	if total <= 0 {
		return 1
	}
	return min(float64(used)/float64(total), 1)
}
