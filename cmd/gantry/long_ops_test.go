package main

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"
)

// `gantry registry gc` and `gantry secret rotate-key` are long server-side
// operations that were sent through the client's request timeout: past it
// the CLI hung up, which cancelled the operation on the server, and the
// user got "context deadline exceeded" instead of the result.
func TestLongOperationsOutliveTheRequestTimeout(t *testing.T) {
	defer func(d time.Duration) { requestTimeout = d }(requestTimeout)
	requestTimeout = 100 * time.Millisecond
	for _, tc := range []struct {
		path, body string
		args       []string
	}{
		{"/api/v1/registry/gc", `{"bytesFreed":1}`, []string{"registry", "gc"}},
		{"/api/v1/secret-key/rotate", `{"KeyID":"k2","Resealed":5000}`, []string{"secret", "rotate-key"}},
	} {
		t.Run(tc.args[0], func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == tc.path {
					select {
					case <-time.After(500 * time.Millisecond):
					case <-r.Context().Done():
						return // the CLI hung up: the operation is cancelled
					}
				}
				w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			root := newRootCmd()
			root.SetArgs(append([]string{"--config", filepath.Join(t.TempDir(), "none"), "--server", srv.URL, "--token", "x"}, tc.args...))
			start := time.Now()
			if err := root.Execute(); err != nil {
				t.Errorf("%v after %v: %v", tc.args, time.Since(start).Round(time.Millisecond), err)
			}
		})
	}
}
