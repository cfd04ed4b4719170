package apiserver_test

import (
	"net/http"
	"testing"
)

// An apply of a Secret by a caller who may not read its values answers
// "configured" whatever the values (so that it tells no guess right), and
// nothing said that those values had not been compared: gantry diff took
// the answer for a change, and reported every such secret as changed on
// every run. The answer now says so in X-Gantry-Secret-Values, for that
// caller only.
func TestSecretApplySaysWhenValuesWereNotCompared(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	govNamespace(t, ts, "team", nil)
	const stored = `{"kind":"Secret","metadata":{"name":"db","namespace":"team"},"stringData":{"password":"hunter2"}}`
	const changed = `{"kind":"Secret","metadata":{"name":"db","namespace":"team"},"stringData":{"password":"other"}}`
	apply := func(tok, query, body string) (res, values string) {
		t.Helper()
		code, b, h := request(t, ts, tok, http.MethodPut, "/api/v1/namespaces/team/secrets/db?apply=true"+query, "application/json", []byte(body))
		if code >= 300 {
			t.Fatalf("apply%s: %d %.200s", query, code, b)
		}
		return h.Get("X-Gantry-Result"), h.Get("X-Gantry-Secret-Values")
	}
	_, dev := govUser(t, ts, "dev", "developer", "team")
	// A create compares nothing with anything stored.
	if res, values := apply(dev, "&dryRun=true", stored); res != "created" || values != "" {
		t.Errorf("the developer's dry-run create: result %q, X-Gantry-Secret-Values %q; want created and none", res, values)
	}
	apply(ts.Token, "", stored)

	for _, body := range []string{stored, changed} {
		if res, values := apply(dev, "&dryRun=true", body); res != "configured" || values != "not-compared" {
			t.Errorf("the developer's dry-run apply: result %q, X-Gantry-Secret-Values %q; want configured and not-compared", res, values)
		}
	}
	// The admin may read the values: they were compared.
	if res, values := apply(ts.Token, "&dryRun=true", stored); res != "unchanged" || values != "" {
		t.Errorf("the admin's dry-run apply of the stored values: result %q, X-Gantry-Secret-Values %q; want unchanged and none", res, values)
	}
	if res, values := apply(ts.Token, "&dryRun=true", changed); res != "configured" || values != "" {
		t.Errorf("the admin's dry-run apply of new values: result %q, X-Gantry-Secret-Values %q; want configured and none", res, values)
	}
	// A real apply by the developer writes without comparing, and says so.
	if res, values := apply(dev, "", stored); res != "configured" || values != "not-compared" {
		t.Errorf("the developer's apply: result %q, X-Gantry-Secret-Values %q; want configured and not-compared", res, values)
	}
}
