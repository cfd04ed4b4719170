package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/internal/clusterslot"
)

// Stop closes the audit log after the API and the registry stopped, so
// that their last requests are in; but the registry's goroutine returned
// as soon as Shutdown closed its listener, not when its requests in
// flight were done, and such a request's audit record was lost.
func TestStopWaitsForRegistryRequestsInFlight(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := apiOnly(dir)
	addr, err := clusterslot.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg.RegistryAddr = addr
	s, err := Start(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + addr
	req, _ := http.NewRequest("POST", base+"/v2/default/zzslow/blobs/uploads/", nil)
	req.SetBasicAuth("admin", s.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusAccepted || loc == "" {
		t.Fatalf("start upload: HTTP %d, Location %q", resp.StatusCode, loc)
	}
	if strings.HasPrefix(loc, "/") {
		loc = base + loc
	}
	pr, pw := io.Pipe()
	patch, _ := http.NewRequest("PATCH", loc, pr)
	patch.SetBasicAuth("admin", s.AdminToken)
	patch.Header.Set("Content-Type", "application/octet-stream")
	patchDone := make(chan int, 1)
	go func() {
		r, err := http.DefaultClient.Do(patch)
		if err != nil {
			patchDone <- -1
			return
		}
		r.Body.Close()
		patchDone <- r.StatusCode
	}()
	pw.Write([]byte("some bytes of a layer"))
	time.Sleep(300 * time.Millisecond) // the PATCH is in its handler, reading the body

	stopped := make(chan struct{})
	go func() { s.Stop(); close(stopped) }()
	select {
	case <-stopped:
		t.Errorf("Stop returned while a registry request was still in flight")
	case <-time.After(2 * time.Second):
	}
	pw.Close()
	code := <-patchDone
	<-stopped
	entries, _ := os.ReadDir(filepath.Join(dir, "audit"))
	n, posts := 0, 0
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(dir, "audit", e.Name()))
		n += strings.Count(string(b), `"method":"PATCH"`)
		posts += strings.Count(string(b), `"method":"POST"`)
	}
	if posts == 0 {
		t.Fatal("no audit record of the upload's POST either: the check is broken")
	}
	if n == 0 {
		t.Errorf("the in-flight PATCH (HTTP %d) left no audit record", code)
	}
}
