package notify

import (
	"slices"
	"testing"
)

// `--api-addr :7443` listens on every address of the machine, like
// 0.0.0.0:7443. The guard used to look the empty host up as a host name,
// fail, and refuse none of the API server's addresses.
func TestGuardWithAnEmptyServerHostRefusesThisMachine(t *testing.T) {
	all := NewGuard("0.0.0.0:7443").server
	if len(all) == 0 {
		t.Skip("this machine reports no interface addresses")
	}
	if empty := NewGuard(":7443").server; !slices.Equal(all, empty) {
		t.Errorf("NewGuard(\":7443\") refuses %v as the API server's addresses, want %v (as for 0.0.0.0:7443)", empty, all)
	}
}
