package v1

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// Aliases of a large scalar are refused once the document would expand
// past a few MiB: yaml.v2's alias ratio check starts at 1000 decoded
// nodes, and a 100 KB document expanded to ~90 MB of JSON (a 3 MiB API
// body to ~2.9 GB). A nested form (a list of aliases, aliased again)
// counts too. Moderate use of anchors still decodes.
func TestAliasExpansionIsBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("kind: App\nname: a\nimage: x\nx: &s " + strings.Repeat("a", 100_000) + "\nargs: [")
	for i := 0; i < 900; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("*s")
	}
	b.WriteString("]\n")
	doc := b.String()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	start := time.Now()
	j, err := YAMLToJSON([]byte(doc))
	runtime.ReadMemStats(&m1)
	t.Logf("input %d bytes -> JSON %d bytes (err %v) in %s, allocated %d MB", len(doc), len(j), err, time.Since(start), (m1.TotalAlloc-m0.TotalAlloc)>>20)
	if err == nil || len(j) > 10*len(doc) {
		t.Errorf("a %d-byte manifest expands to %d bytes of JSON (err %v); want it refused", len(doc), len(j), err)
	}
	nested := "kind: App\nname: a\nimage: x\nx: &s " + strings.Repeat("a", 100_000) + "\ny: &l [" + strings.TrimSuffix(strings.Repeat("*s,", 30), ",") + "]\nargs: [" + strings.TrimSuffix(strings.Repeat("*l,", 30), ",") + "]\n"
	if _, err := YAMLToJSON([]byte(nested)); err == nil {
		t.Errorf("30 aliases of a list of 30 aliases of 100 KB decoded")
	}
	// The same bomb below 1001 levels of lists: depth is no escape.
	deep := "kind: App\nname: a\nimage: x\nx: &s " + strings.Repeat("a", 100_000) + "\nargs: " + strings.Repeat("[", 1001) +
		strings.TrimSuffix(strings.Repeat("*s,", 900), ",") + strings.Repeat("]", 1001) + "\n"
	if _, err := YAMLToJSON([]byte(deep)); err == nil {
		t.Errorf("900 aliases of 100 KB nested 1001 lists deep decoded")
	}
	fine := "kind: App\nname: a\nimage: x\nlabels: &l {tier: web}\nannotations: *l\n"
	if _, err := DecodeManifest([]byte(fine)); err != nil {
		t.Errorf("a small alias: %v", err)
	}
}
