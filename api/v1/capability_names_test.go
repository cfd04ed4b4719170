package v1

import (
	"testing"
)

// Capability names were checked for their shape only: NET_ADMN or CAP_
// were stored in a policy (allowing nothing) and in an App (refused by
// the runtime only when the container was made).
func TestCapabilityNamesMustBeLinuxCapabilities(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"NET_ADMIN", true}, {"net_admin", true}, {"CAP_SYS_PTRACE", true}, {"cap_bpf", true},
		{"NET_ADMN", false}, {"CAP_", false}, {"", false}, {"SYS-ADMIN", false},
	} {
		if got := isCapability(tc.name); got != tc.ok {
			t.Errorf("isCapability(%q) = %v, want %v", tc.name, got, tc.ok)
		}
		n := &Namespace{Metadata: ObjectMeta{Name: "team"}}
		n.Spec.Policy = &Policy{AllowCapabilities: []string{tc.name}}
		var errs FieldErrors
		validateNamespace(&errs, n)
		if (len(errs) == 0) != tc.ok {
			t.Errorf("policy allowCapabilities [%q]: %v", tc.name, errs)
		}
	}
	var errs FieldErrors
	n := &Namespace{Metadata: ObjectMeta{Name: "team"}}
	n.Spec.Policy = &Policy{AllowCapabilities: []string{"ALL"}}
	validateNamespace(&errs, n)
	if len(errs) != 1 {
		t.Errorf("policy allowCapabilities [ALL]: %v; want it refused (allowPrivileged allows all)", errs)
	}
}
