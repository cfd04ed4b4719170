package apiserver

import (
	"fmt"
	"net/http"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// The apply loop retried every 409, so a route or node port another App
// has (an admission's refusal, answered 409 too) was checked six times
// before the caller heard of it. Only lost races with another writer are
// retried.
func TestApplyRetriesOnlyLostRaces(t *testing.T) {
	claim := &v1.StatusError{Status: v1.Status{Code: http.StatusConflict, Reason: "Conflict", Message: "route already in use by another app"}}
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("app %q: %w", "default/web", v1.ErrConflict), true},
		{fmt.Errorf("transaction (create app): another writer changed one of these objects: %w", v1.ErrConflict), true},
		{fmt.Errorf("app %q %w", "default/web", v1.ErrAlreadyExists), true},
		{claim, false},
		{fmt.Errorf("admit: %w", claim), false},
		{fmt.Errorf("%w: bad", v1.ErrInvalid), false},
		{nil, false},
	} {
		if got := raced(c.err); got != c.want {
			t.Errorf("raced(%v) = %v; want %v", c.err, got, c.want)
		}
	}
}
