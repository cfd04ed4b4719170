package v1

import (
	"strings"
	"testing"
)

// Namespace limits that no App could meet were stored, and every App was
// then refused with errors on fields its author never wrote
// (spec.resources.memory for an App that gave none).
func TestNamespaceLimitsThatNoAppCanMeetAreRefused(t *testing.T) {
	for _, tc := range []struct {
		limits LimitDefaults
		field  string // "" for valid
	}{
		{LimitDefaults{DefaultMemory: 128 << 20, MaxMemory: 1 << 30, DefaultCPU: 100, MaxCPU: 2000}, ""},
		{LimitDefaults{MaxCPU: 10, DefaultCPU: 10}, ""},
		{LimitDefaults{MaxMemory: 32 << 20, DefaultMemory: 16 << 20}, ""},
		{LimitDefaults{DefaultMemory: 1 << 20}, "spec.limits.defaultMemory"},
		{LimitDefaults{MaxMemory: 1 << 20, DefaultMemory: 1 << 20}, "spec.limits.defaultMemory,spec.limits.maxMemory"},
		// Apps that state their own resources can meet these.
		{LimitDefaults{MaxCPU: 10}, ""},
		{LimitDefaults{MaxMemory: 32 << 20}, ""},
	} {
		l := tc.limits
		n := &Namespace{Metadata: ObjectMeta{Name: "team"}}
		n.Spec.Limits = &l
		var errs FieldErrors
		validateNamespace(&errs, n)
		var got []string
		for _, e := range errs {
			got = append(got, e.Field)
		}
		if strings.Join(got, ",") != tc.field {
			t.Errorf("limits %+v: errors %v; want on %q", tc.limits, errs, tc.field)
		}
	}
}
