package apiserver

import (
	"testing"

	"github.com/gantry-dev/gantry/internal/auth"
)

// Every resource and verb of the built-in roles is one that requests are
// authorized for: a Role's warnings would otherwise call a real one a
// typo (or a built-in role would hold a dead entry, as "volumes" was).
func TestBuiltinRolesNameOnlyKnownResources(t *testing.T) {
	for name, rules := range auth.BuiltinRoles {
		for _, r := range rules {
			for _, res := range r.Resources {
				if !knownResource(res) {
					t.Errorf("built-in role %s: resource %q is not known to Role warnings", name, res)
				}
			}
		}
	}
}
