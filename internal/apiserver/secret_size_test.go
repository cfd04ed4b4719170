package apiserver_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// The documented 1 MiB of secret values did not fit the store: sealed
// and encoded twice, anything past about 860 KiB was refused by etcd with
// 413, after a dry run had answered 201, and with advice to move big
// values into Secrets. The limit now counts key names too and is one
// that fits: a secret at it is stored, whatever its shape, and one past
// it is a 400 naming data, in a dry run too.
func TestSecretsUpToTheLimitAreStored(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	note := strings.Repeat("a", 60<<10) // an annotation counts too, as JSON
	noteSize := len(`{"note":""}`) + len(note)
	put := func(name string, data map[string][]byte, dry bool) (int, string) {
		t.Helper()
		enc := map[string]string{}
		for k, v := range data {
			enc[k] = base64.StdEncoding.EncodeToString(v)
		}
		body, _ := json.Marshal(map[string]any{"kind": "Secret", "metadata": map[string]any{"name": name, "namespace": "default",
			"annotations": map[string]string{"note": note}}, "data": enc})
		q := "?apply=true"
		if dry {
			q += "&dryRun=true"
		}
		return raw(t, ts, "PUT", "/api/v1/namespaces/default/secrets/"+name+q, "application/json", body)
	}
	one := func(n int) map[string][]byte {
		return map[string][]byte{"blob": make([]byte, n-2*len("blob")-16)}
	}
	many := func(size int) map[string][]byte {
		// Long key names with small random-looking values.
		out := map[string][]byte{}
		for i := 0; v1.SecretSize(out, nil) < size-600; i++ {
			out[fmt.Sprintf("%0250d", i)] = []byte("v")
		}
		return out
	}
	for _, tc := range []struct {
		name string
		data map[string][]byte
	}{
		{"one-value", one(v1.MaxSecretSize - noteSize)},
		{"many-keys", many(v1.MaxSecretSize - noteSize)},
	} {
		if code, body := put(tc.name, tc.data, false); code != http.StatusCreated {
			t.Errorf("%s at %d of %d counted: %d %.300s", tc.name, v1.SecretSize(tc.data, nil), v1.MaxSecretSize, code, body)
		}
	}
	// Past the limit by its annotation alone: refused before the store,
	// in a dry run too (it answered 201, then the write 413).
	over := one(v1.MaxSecretSize - noteSize + 1)
	for _, dry := range []bool{true, false} {
		code, body := put("over", over, dry)
		if code != http.StatusBadRequest || !strings.Contains(body, `"data"`) || !strings.Contains(body, "768 KiB") {
			t.Errorf("a secret one byte past the limit (dry run %v): %d %.300s; want 400 at data", dry, code, body)
		}
	}
}

// The store's answer to a write too large gave every kind the advice for
// Apps (move big values into Secrets), Secrets included; an App's 413
// keeps it.
func TestAnAppTooLargeIsToldWhatToDo(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	var env []map[string]string
	for i := range 12 {
		env = append(env, map[string]string{"name": fmt.Sprintf("V%d", i), "value": strings.Repeat("x", 100<<10)})
	}
	body, _ := json.Marshal(map[string]any{"kind": "App", "metadata": map[string]any{"name": "big", "namespace": "default"},
		"spec": map[string]any{"image": "registry.example/web@sha256:" + strings.Repeat("a", 64), "env": env}})
	code, out := raw(t, ts, "PUT", "/api/v1/namespaces/default/apps/big?apply=true", "application/json", body)
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(out, "an App is written together with its new revision") {
		t.Fatalf("an App of 1.2 MB: %d %.300s", code, out)
	}
}
