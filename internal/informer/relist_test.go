package informer

import (
	"log/slog"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// A relist whose List ran before a controller's own write replaced the
// whole cache: the object recorded with Observe (newer than the list)
// vanished, and handlers heard it was deleted, though it exists and the
// watch was about to deliver it again; a controller reconciling then
// could miss its own fresh instance and make another.
func TestARelistKeepsWhatWasObservedAfterIt(t *testing.T) {
	inf := New[*v1.Secret](nil, slog.New(slog.DiscardHandler))
	inf.seen(10)
	inf.Observe(secretAt(20)) // the controller's own create, at rev 20
	var deletes int
	inf.OnChange(func(_, _ *v1.Secret, deleted bool) {
		if deleted {
			deletes++
		}
	})
	// The relist read the store at rev 15, before the create.
	inf.seen(15)
	inf.replace(nil, 15)
	if _, ok := inf.Get("default", "db"); !ok {
		t.Errorf("object observed at rev 20 vanished from the cache after a relist at rev 15")
	}
	if deletes != 0 {
		t.Errorf("handlers were told of %d deletes of an object that exists", deletes)
	}
	// What the list does not hold and was cached before it goes.
	inf.Observe(secretAt(40))
	inf.replace(nil, 50)
	if _, ok := inf.Get("default", "db"); ok {
		t.Errorf("an object cached at rev 40 and absent from a list at rev 50 stayed")
	}
	if deletes != 1 {
		t.Errorf("handlers were told of %d deletes; want 1", deletes)
	}
}
