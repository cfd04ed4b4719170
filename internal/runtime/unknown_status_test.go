package runtime

import (
	"context"
	"errors"
	"testing"

	"github.com/containerd/containerd/api/types/task"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// containerd reports a task as UNKNOWN (no error) when the shim does not
// answer its State call in time (a loaded node, a stuck shim); the process
// may well be running. describe reported such a container as
// StatusCreated, "no process of it is running", and the agent's found()
// then took it for a never-started container: dropStaleTask ran
// Stop(id, 0) on it (SIGKILL) and it was set up again.
func TestInspectUnknownTaskIsUnavailable(t *testing.T) {
	ft := newFakeTasks()
	ft.procs[""].status = task.Status_UNKNOWN
	d := fakeDriver(t, ft)
	c, err := d.Inspect(context.Background(), "c1")
	if err == nil && c.Status == StatusCreated {
		t.Errorf("Inspect of a container whose task state is unknown = status %q; want an error wrapping v1.ErrUnavailable (or not %q)", c.Status, StatusCreated)
	}
	if err != nil && !errors.Is(err, v1.ErrUnavailable) {
		t.Errorf("Inspect: %v", err)
	}
}
