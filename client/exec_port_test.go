package client

import (
	"context"
	"strings"
	"testing"
	"time"
)

// A server address without a port (https://gantry.example.com behind a
// proxy on 443) works for every request, which net/http sends to the
// scheme's port; exec dialled the host as written and failed on the
// missing port before it tried to connect.
func TestExecDialsTheSchemesDefaultPort(t *testing.T) {
	for _, server := range []string{"http://127.0.0.1", "https://127.0.0.1"} {
		c, err := New(Config{Server: server, Token: "x", Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, getErr := c.Get(ctx, "Instance", "default", "web-x")
		_, _, execErr := c.Exec(ctx, "default", "web-x", ExecOptions{Cmd: []string{"true"}})
		cancel()
		if execErr != nil && strings.Contains(execErr.Error(), "missing port") {
			t.Errorf("%s: exec: %v (a GET to the same server: %v)", server, execErr, getErr)
		}
	}
}
