package apps_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/apps"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// deploy writes the App web with image tag, as an apply does, and
// returns the App as stored.
func deploy(t *testing.T, s *store.Store, tag string, limit int32) *v1.App {
	t.Helper()
	ctx := context.Background()
	a := &v1.App{TypeMeta: v1.TypeMeta{Kind: "App"}, Metadata: v1.ObjectMeta{Name: "web", Namespace: "default"}}
	a.Spec.Image = "web:" + tag
	a.Spec.RevisionHistoryLimit = &limit
	v1.SetDefaults(a)
	prev, err := store.Get[*v1.App](ctx, s, "default", "web")
	if errors.Is(err, v1.ErrNotFound) {
		prev = nil
	} else if err != nil {
		t.Fatal(err)
	}
	if _, err := apps.Save(ctx, s, apps.Change{App: a, Prev: prev, Image: a.Spec.Image}); err != nil {
		t.Fatalf("save %s: %v", tag, err)
	}
	return a
}

// history lists the numbers of web's revisions.
func history(t *testing.T, s *store.Store) []int64 {
	t.Helper()
	revs, err := apps.History(context.Background(), s, "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	for _, r := range revs {
		out = append(out, r.Spec.Number)
	}
	return out
}

// setStable marks revision n as the one that last completed a rollout,
// as the rollout controller does.
func setStable(t *testing.T, s *store.Store, n int64) {
	t.Helper()
	if _, err := store.Mutate(context.Background(), s, "default", "web", func(a *v1.App) error {
		a.Status.StableRevision = n
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestRevisionHistoryLimit(t *testing.T) {
	tests := []struct {
		name    string
		deploys int
		limit   int32
		stable  int64 // marked stable once deployed; 0 for none
		lower   int32 // when set, the limit is then lowered to it without a new revision
		want    []int64
	}{
		{"under the limit nothing goes", 4, 10, 0, 0, []int64{1, 2, 3, 4}},
		{"the newest limit before the current stay", 8, 3, 0, 0, []int64{5, 6, 7, 8}},
		{"the stable revision stays however old", 8, 3, 2, 0, []int64{2, 5, 6, 7, 8}},
		{"a limit of 0 keeps the current one", 5, 0, 0, 0, []int64{5}},
		{"a limit of 0 keeps the stable one too", 5, 0, 4, 0, []int64{4, 5}},
		{"lowering the limit prunes at once", 6, 10, 0, 2, []int64{4, 5, 6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := storetest.New(t)
			for i := 1; i <= tt.deploys; i++ {
				deploy(t, s, fmt.Sprint("v", i), tt.limit)
				if int64(i) == tt.stable {
					setStable(t, s, tt.stable)
				}
			}
			if tt.lower != 0 {
				deploy(t, s, fmt.Sprint("v", tt.deploys), tt.lower)
			}
			if got := history(t, s); !slices.Equal(got, tt.want) {
				t.Errorf("revisions kept = %v, want %v", got, tt.want)
			}
		})
	}
}

// A revision that instances still run is kept, as Kubernetes keeps a
// ReplicaSet with pods.
func TestRevisionsInUseAreKept(t *testing.T) {
	s := storetest.New(t)
	for i := 1; i <= 3; i++ {
		deploy(t, s, fmt.Sprint("v", i), 1)
	}
	inst := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"},
		Metadata: v1.ObjectMeta{Name: "web-abcde", Namespace: "default", Labels: map[string]string{v1.LabelApp: "web"}},
		Spec:     v1.InstanceSpec{App: "web", Revision: 2}}
	if err := s.Create(context.Background(), inst); err != nil {
		t.Fatal(err)
	}
	for i := 4; i <= 6; i++ {
		deploy(t, s, fmt.Sprint("v", i), 1)
	}
	if got, want := history(t, s), []int64{2, 5, 6}; !slices.Equal(got, want) {
		t.Errorf("revisions kept = %v, want %v (2 runs an instance)", got, want)
	}
}

// The instances of a deleted App of the same name, retiring beside the
// new one's, run the old App's revision numbers: they kept the new App's
// revisions of those numbers from being pruned.
func TestANamesakesInstancesKeepNoRevision(t *testing.T) {
	s := storetest.New(t)
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		deploy(t, s, fmt.Sprint("v", i), 1)
	}
	a, err := store.Get[*v1.App](ctx, s, "default", "web")
	if err != nil || a.Metadata.UID == "" {
		t.Fatalf("the App has no UID (%v)", err)
	}
	for name, uid := range map[string]string{"web-namesake": "uid-of-a-deleted-web", "web-own": a.Metadata.UID} {
		rev := int64(2)
		if uid == a.Metadata.UID {
			rev = 3
		}
		inst := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"},
			Metadata: v1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{v1.LabelApp: "web", v1.LabelAppUID: uid}},
			Spec:     v1.InstanceSpec{App: "web", Revision: rev}}
		if err := s.Create(ctx, inst); err != nil {
			t.Fatal(err)
		}
	}
	for i := 4; i <= 6; i++ {
		deploy(t, s, fmt.Sprint("v", i), 1)
	}
	if got, want := history(t, s), []int64{3, 5, 6}; !slices.Equal(got, want) {
		t.Errorf("revisions kept = %v, want %v (3 runs an instance of web; 2 only one of a deleted namesake)", got, want)
	}
}

// A delete that fails part-way through a long history has deleted the
// oldest revisions, never the current or stable one.
func TestKeepLast(t *testing.T) {
	var revs []*v1.Revision
	for n := int64(1); n <= 6; n++ {
		revs = append(revs, &v1.Revision{Spec: v1.RevisionSpec{Number: n}})
	}
	var got []int64
	for _, r := range apps.KeepLast(revs, 6, 2) {
		got = append(got, r.Spec.Number)
	}
	if want := []int64{1, 3, 4, 5, 2, 6}; !slices.Equal(got, want) {
		t.Errorf("order = %v, want %v", got, want)
	}
}

func TestRollbackToPrunedRevision(t *testing.T) {
	s := storetest.New(t)
	for i := 1; i <= 5; i++ {
		deploy(t, s, fmt.Sprint("v", i), 2)
	}
	_, _, err := apps.Rollback(context.Background(), s, "default", "web", apps.RollbackOptions{To: 1})
	if !errors.Is(err, v1.ErrUnprocessable) || !strings.Contains(err.Error(), "no revision 1") {
		t.Fatalf("rollback to a pruned revision: got %v, want an error that it is gone", err)
	}
	if _, _, err := apps.Rollback(context.Background(), s, "default", "web", apps.RollbackOptions{To: 3}); err != nil {
		t.Fatalf("rollback to a kept revision: %v", err)
	}
	if got, want := history(t, s), []int64{4, 5, 6}; !slices.Equal(got, want) {
		t.Errorf("after the rollback revisions kept = %v, want %v", got, want)
	}
}

// An App with more revisions than one etcd transaction may delete is still
// deleted whole.
func TestDeleteAppWithLongHistory(t *testing.T) {
	s := storetest.New(t)
	const n = store.MaxTxnOps*2 + 5
	for i := 1; i <= n; i++ {
		deploy(t, s, fmt.Sprint("v", i), 1000)
	}
	if got := len(history(t, s)); got != n {
		t.Fatalf("%d revisions before the delete, want %d", got, n)
	}
	if _, err := apps.Delete(context.Background(), s, "default", "web", 0); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if got := history(t, s); len(got) != 0 {
		t.Errorf("revisions left after the delete: %v", got)
	}
	if _, err := store.Get[*v1.App](context.Background(), s, "default", "web"); !errors.Is(err, v1.ErrNotFound) {
		t.Errorf("app after the delete: %v, want not found", err)
	}
	// Its name can be used again.
	deploy(t, s, "again", 10)
	if got := history(t, s); !slices.Equal(got, []int64{1}) {
		t.Errorf("revisions of the new app = %v, want [1]", got)
	}
}

// A delete that is told the App's revision deletes no history if the App
// has changed since.
func TestDeleteStaleRevisionKeepsHistory(t *testing.T) {
	s := storetest.New(t)
	const n = store.MaxTxnOps + 5
	var a *v1.App
	for i := 1; i <= n; i++ {
		a = deploy(t, s, fmt.Sprint("v", i), 1000)
	}
	stale := a.Metadata.Revision
	setStable(t, s, n)
	if _, err := apps.Delete(context.Background(), s, "default", "web", stale); !errors.Is(err, v1.ErrConflict) {
		t.Fatalf("delete at a stale revision: got %v, want a conflict", err)
	}
	if got := len(history(t, s)); got != n {
		t.Errorf("%d revisions after the refused delete, want all %d", got, n)
	}
}
