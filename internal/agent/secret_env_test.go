package agent

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
)

// A secret value the environment cannot carry went into the container's
// spec as it was: runc refused a NUL byte with an error quoting
// NAME=value, which the agent put into the instance's status and events,
// the secret in clear for whoever reads instances; and one past the
// kernel's limit made the program's exec fail with nothing naming the
// secret. Both are refused before the runtime, naming the key and not
// the value, and a runtime message that quotes a secret of the
// environment is redacted.
func TestSecretEnvValuesNeverReachAMessage(t *testing.T) {
	const secret = "hunter2-db-password"
	values := map[string]string{
		"nul":  secret + "\x00tail",
		"big":  strings.Repeat("x", v1.MaxArgLen),
		"fine": secret,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(r.URL.Path, "/") // …/secrets/NAME/reveal
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"data":{"password":%q}}`, base64.StdEncoding.EncodeToString([]byte(values[parts[len(parts)-2]])))
	}))
	t.Cleanup(srv.Close)
	c, err := client.New(client.Config{Server: srv.URL, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{cfg: Config{NodeName: "n1"}, api: c, log: slog.New(slog.DiscardHandler)}
	env := func(secretName string) ([]string, []string, error) {
		inst := instanceWith(v1.Health{})
		inst.Spec.Template.Env = v1.EnvList{{Name: "DB_PASSWORD", Secret: &v1.SecretRef{Name: secretName, Key: "password"}}}
		return a.environment(context.Background(), inst)
	}
	for _, name := range []string{"nul", "big"} {
		_, _, err := env(name)
		if !errors.Is(err, v1.ErrInvalid) || !strings.Contains(err.Error(), `key "password" of secret `+name) || !strings.Contains(err.Error(), "files:") {
			t.Errorf("secret %s: %v; want an invalid-value error naming the key and files:", name, err)
		}
		if err != nil && (strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "xxxx")) {
			t.Errorf("secret %s: the error holds the value: %v", name, err)
		}
	}
	vars, secrets, err := env("fine")
	if err != nil || len(secrets) != 1 || secrets[0] != secret || vars[len(vars)-1] != "DB_PASSWORD="+secret {
		t.Fatalf("a plain secret: %v %v %v", vars, secrets, err)
	}

	// A runtime message quoting the environment loses the values.
	w := &worker{secrets: []string{secret + "\x00tail", "ab"}}
	msg := w.redact(`environment variable value can't contain null(\x00): "DB_PASSWORD=hunter2-db-password\x00tail"; ab`)
	if strings.Contains(msg, "hunter2") || !strings.Contains(msg, `"DB_PASSWORD=[secret]"`) || !strings.HasSuffix(msg, "; ab") {
		t.Errorf("redacted: %q", msg)
	}
}
