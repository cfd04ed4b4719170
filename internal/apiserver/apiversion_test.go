package apiserver_test

import (
	"strings"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// A manifest with a foreign apiVersion is refused by the manifest decoder
// ("apiVersion ... is not supported: use v1"); the same object sent to the
// API was stored as a v1 object without a word (201). docs/api.md: every
// object has apiVersion: v1.
func TestForeignAPIVersionIsRefused(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	body := `{"kind":"App","apiVersion":"apps/v2","metadata":{"name":"web"},"spec":{"image":"x:1"}}`
	if _, err := v1.DecodeManifest([]byte(body)); err == nil {
		t.Fatal("the manifest decoder accepts apiVersion apps/v2 too; this test assumes it refuses it")
	}
	code, out := raw(t, ts, "POST", "/api/v1/namespaces/default/apps", "application/json", []byte(body))
	if code != 400 || !strings.Contains(out, "is not supported: use v1") {
		t.Errorf("POST with apiVersion apps/v2 = %d %s; want 400 as the manifest decoder refuses it", code, trunc(out))
	}
	code, out = raw(t, ts, "PUT", "/api/v1/namespaces/default/apps/web2?apply=true", "application/json",
		[]byte(`{"kind":"App","apiVersion":"v9","metadata":{"name":"web2"},"spec":{"image":"x:1"}}`))
	if code != 400 {
		t.Errorf("apply with apiVersion v9 = %d %s; want 400", code, trunc(out))
	}
	for _, av := range []string{"v1", "gantry.dev/v1", ""} {
		code, out = raw(t, ts, "PUT", "/api/v1/namespaces/default/apps/web3?apply=true", "application/json",
			[]byte(`{"kind":"App","apiVersion":"`+av+`","metadata":{"name":"web3"},"spec":{"image":"x:1"}}`))
		if code >= 300 {
			t.Errorf("apply with apiVersion %q = %d %s; want it accepted", av, code, trunc(out))
		}
	}
}
