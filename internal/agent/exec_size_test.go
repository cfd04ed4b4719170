package agent

import (
	"net/url"
	"testing"

	"github.com/gantry-dev/gantry/internal/runtime"
)

func TestInitialSizeOfAnExec(t *testing.T) {
	for _, tc := range []struct {
		q    string
		want *runtime.Size
	}{
		{"width=132&height=43", &runtime.Size{Width: 132, Height: 43}},
		{"", nil},
		{"width=132", nil},
		{"width=0&height=43", nil},
		{"width=70000&height=43", nil},
		{"width=-1&height=43", nil},
		{"width=x&height=43", nil},
	} {
		q, _ := url.ParseQuery(tc.q)
		got := initialSize(q)
		if (got == nil) != (tc.want == nil) || got != nil && *got != *tc.want {
			t.Errorf("initialSize(%q) = %v, want %v", tc.q, got, tc.want)
		}
	}
}
