package node

import (
	"net"
	"testing"

	"github.com/gantry-dev/gantry/internal/network"
)

// gantry down deleted whatever bridge the node used, also one of the
// machine's own (a LAN or VM bridge named with --bridge), which took the
// host off its network. A bridge that existed before the node first used
// it is recorded as the machine's, and kept.
func TestBridgeThatWasThereIsKept(t *testing.T) {
	ifs, err := net.Interfaces()
	if err != nil || len(ifs) == 0 {
		t.Skip("no interfaces to stand for a bridge of the machine")
	}
	existing := ifs[0].Name // lo, usually: any link that exists will do
	dir := t.TempDir()
	if !bridgeWasThere(dir, existing) {
		t.Fatalf("first start on %s, which exists: not taken as the machine's", existing)
	}
	if bridgeWasThere(dir, "gtnone9") {
		t.Fatal("first start on a bridge that does not exist: taken as the machine's")
	}
	// Once recorded, the record decides, whatever exists now (Gantry's
	// own bridge exists after the first start).
	for _, keep := range []bool{true, false} {
		if err := saveState(dir, state{Network: network.Config{BridgeName: existing, KeepBridge: keep}}); err != nil {
			t.Fatal(err)
		}
		if got := bridgeWasThere(dir, existing); got != keep {
			t.Errorf("recorded KeepBridge %v: bridgeWasThere = %v", keep, got)
		}
	}
}
