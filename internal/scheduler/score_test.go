package scheduler

import (
	"math"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

func node(cpu, placedCPU v1.CPU, mem, placedMem v1.Bytes) *NodeInfo {
	return &NodeInfo{
		Allocatable: v1.Capacity{CPU: cpu, Memory: mem},
		Placed:      v1.Capacity{CPU: placedCPU, Memory: placedMem},
	}
}

func TestBinpackScore(t *testing.T) {
	tests := []struct {
		name string
		node *NodeInfo
		req  Request
		want float64
	}{
		{"an empty node scores the request's share", node(1000, 0, 4*gi, 0), Request{CPU: 500, Memory: gi}, (0.5 + 0.25) / 2},
		{"a node the request fills completely scores 1", node(1000, 500, 4*gi, 3*gi), Request{CPU: 500, Memory: gi}, 1},
		{"a half full node scores one half with an empty request", node(2000, 1000, 2*gi, gi), Request{}, 0.5},
		{"a resource the node does not offer counts as full", node(0, 0, 2*gi, 0), Request{Memory: gi}, (1 + 0.5) / 2},
		{"an overcommitted node is clamped to full", node(1000, 2000, gi, 2*gi), Request{}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := BinpackScore(tt.node, &tt.req, 0); math.Abs(got-tt.want) > 1e-12 {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSpreadScore(t *testing.T) {
	tests := []struct {
		name string
		node *NodeInfo
		same int
		want float64
	}{
		{"an empty node without the app scores highest", node(1000, 0, gi, 0), 0, (1000 + 0.5) / 1000.5},
		{"a full node without the app scores one step", node(1000, 1000, gi, gi), 0, 1000 / 1000.5},
		{"a full node with 1000 or more of the app scores zero", node(1000, 1000, gi, gi), 5000, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SpreadScore(tt.node, &Request{}, tt.same); math.Abs(got-tt.want) > 1e-12 {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// The orderings the strategies promise, each as "a should score above b".
func TestScoreOrderings(t *testing.T) {
	r := Request{CPU: 100, Memory: 128 * mi}
	empty := node(4000, 0, 8*gi, 0)
	half := node(4000, 2000, 8*gi, 4*gi)
	full := node(4000, 3900, 8*gi, 8*gi-128*mi)
	tests := []struct {
		name           string
		score          Scorer
		a, b           *NodeInfo
		sameA, sameB   int
		wantAAboveB    bool
		wantEqualScore bool
	}{
		{name: "bin-pack prefers a fuller node", score: BinpackScore, a: half, b: empty, wantAAboveB: true},
		{name: "bin-pack ignores the app count", score: BinpackScore, a: half, b: half, sameA: 5, sameB: 0, wantEqualScore: true},
		{name: "spread prefers an emptier node when the app counts are equal", score: SpreadScore, a: empty, b: half, sameA: 1, sameB: 1, wantAAboveB: true},
		{name: "spread prefers fewer instances of the app over emptiness", score: SpreadScore, a: full, b: empty, sameA: 0, sameB: 1, wantAAboveB: true},
		{name: "spread prefers 2 of the app on a full node over 3 on an empty one", score: SpreadScore, a: full, b: empty, sameA: 2, sameB: 3, wantAAboveB: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := tt.score(tt.a, &r, tt.sameA), tt.score(tt.b, &r, tt.sameB)
			for _, s := range []float64{a, b} {
				if s < 0 || s > 1 {
					t.Fatalf("score %v is outside [0, 1]", s)
				}
			}
			switch {
			case tt.wantEqualScore && a != b:
				t.Errorf("scores %v and %v differ", a, b)
			case tt.wantAAboveB && !(a > b):
				t.Errorf("a scored %v, not above b's %v", a, b)
			}
		})
	}
}

func TestScorerFor(t *testing.T) {
	n := node(1000, 0, gi, 0)
	r := Request{}
	if got, want := ScorerFor(v1.PlacementSpread)(n, &r, 0), SpreadScore(n, &r, 0); got != want {
		t.Errorf("spread: got %v, want the spread score %v", got, want)
	}
	for _, p := range []string{"", v1.PlacementBinpack} {
		if got, want := ScorerFor(p)(n, &r, 0), BinpackScore(n, &r, 0); got != want {
			t.Errorf("%q: got %v, want the bin-pack score %v", p, got, want)
		}
	}
}
