package registry

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// One client that starts a monolithic upload and stalls its body holds
// writeMu shared for as long as it likes (the server sets no body read
// timeout). A collection started meanwhile once queued for the exclusive
// lock, and, RWMutex preferring the waiting writer, every blob HEAD,
// upload finish, mount and manifest PUT of every namespace then waited
// too. The collection now tries for the lock without queueing, and gives
// up with ErrGCBusy.
func TestStalledUploadPlusGCDoesNotStallOtherPushes(t *testing.T) {
	tr := newTestRegistry(t, nil)
	other := tr.uploadBlob(t, "shared/base", adminToken, []byte("someone else's layer"))

	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequest("POST", tr.srv.URL+"/v2/team/app/blobs/uploads/?digest="+digest.FromString("never").String(), pr)
	req.SetBasicAuth("x", aliceToken)
	req.ContentLength = 1 << 20
	req.Header.Set("Content-Type", "application/octet-stream")
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
	}()
	_, _ = pw.Write([]byte(strings.Repeat("x", 10))) // then nothing
	time.Sleep(200 * time.Millisecond)

	saved := gcLockWait
	gcLockWait = time.Second
	t.Cleanup(func() { gcLockWait = saved })
	gcErr := make(chan error, 1)
	go func() { _, err := tr.GC(context.Background()); gcErr <- err }()
	time.Sleep(200 * time.Millisecond)

	done := make(chan int, 1)
	go func() {
		r, _ := http.NewRequest("HEAD", tr.srv.URL+"/v2/shared/base/blobs/"+other.String(), nil)
		r.SetBasicAuth("x", adminToken)
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			done <- -1
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	select {
	case code := <-done:
		t.Logf("HEAD in another namespace: %d", code)
	case <-time.After(3 * time.Second):
		t.Errorf("a HEAD on a blob of another namespace hangs behind one stalled upload and a waiting GC")
	}
	select {
	case err := <-gcErr:
		if !errors.Is(err, ErrGCBusy) {
			t.Errorf("GC while an upload held the registry: %v; want ErrGCBusy", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("GC did not give up")
	}
	pw.CloseWithError(io.ErrUnexpectedEOF) // let the server go
}
