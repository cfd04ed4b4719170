package apps_test

import (
	"context"
	"slices"
	"testing"

	"github.com/gantry-dev/gantry/internal/apps"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// An undo copies the revision it restores to the next number. With
// revisionHistoryLimit 2 and revisions v1, v2, v3, one undo (to v2) used
// to prune v1 and keep v2's template twice; Kubernetes, which moves the
// restored revision, would keep v1 and v3. The older copy now goes first.
func TestUndoDoesNotPushADistinctTemplateOutOfTheHistory(t *testing.T) {
	s := storetest.New(t)
	for _, tag := range []string{"v1", "v2", "v3"} {
		deploy(t, s, tag, 2)
	}
	setStable(t, s, 3)
	if _, _, err := apps.Rollback(context.Background(), s, "default", "web", apps.RollbackOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, want := history(t, s), []int64{1, 3, 4}; !slices.Equal(got, want) {
		t.Errorf("after one undo to v2 (limit 2): revisions %v, want %v (v1, v3, and v2 as revision 4)", got, want)
	}
}
