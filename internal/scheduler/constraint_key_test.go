package scheduler

import (
	"errors"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// constraintKey joined values with \x01 without escaping, and validation
// let a value hold \x01, so two different constraint sets shared one memo
// entry: the first one placed decided the candidates of the other.
// (Validation now refuses such values too; the key must not depend on it.)
func TestConstraintSetsThatDifferDoNotShareAMemoEntry(t *testing.T) {
	nodes := []*v1.Node{newNode("n1", 4000, 8*gi, "zone", "a")}
	legit := Request{CPU: 100, Memory: 64 * mi, Constraints: []v1.Constraint{{Label: "zone", Op: v1.OpIn, Values: []string{"a", "b"}}}}
	crafted := Request{CPU: 100, Memory: 64 * mi, Constraints: []v1.Constraint{{Label: "zone", Op: v1.OpIn, Values: []string{"a\x01b"}}}}
	t.Run("crafted first starves the legit request", func(t *testing.T) {
		s := NewSnapshot(nodes, nil)
		if _, err := Place(s, &crafted); !errors.Is(err, ErrUnschedulable) {
			t.Fatalf("crafted request: want unschedulable, got %v", err)
		}
		if node, err := Place(s, &legit); err != nil || node != "n1" {
			t.Fatalf("zone in (a,b) on a zone=a node: got %q, %v", node, err)
		}
	})
	t.Run("legit first lets the crafted request through", func(t *testing.T) {
		s := NewSnapshot(nodes, nil)
		if node, err := Place(s, &legit); err != nil || node != "n1" {
			t.Fatalf("legit: got %q, %v", node, err)
		}
		if node, err := Place(s, &crafted); err == nil {
			t.Fatalf("zone in (\"a\\x01b\") placed on %s, whose zone is a", node)
		}
	})
}
