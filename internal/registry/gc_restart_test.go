package registry

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// TestGCAfterRestartKeepsWhatTheLastProcessPromised: a client found an
// old unreferenced blob with HEAD and will reference it in a manifest.
// The registry restarts before the manifest arrives, so the new
// process has no record of the promise. Its collections in the first
// GCGrace must keep the blob anyway; later ones may take it.
func TestGCAfterRestartKeepsWhatTheLastProcessPromised(t *testing.T) {
	tr := newTestRegistry(t, nil)
	orphan := tr.uploadBlob(t, "team/app", adminToken, []byte("old layer, about to be reused"))
	tr.age(t)
	if resp, _ := tr.do(t, "HEAD", "/v2/team/app/blobs/"+orphan.String(), adminToken, nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("HEAD: %d", resp.StatusCode)
	}

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	restarted, err := New(context.Background(), tr.cfg, log)
	if err != nil {
		t.Fatalf("New after restart: %v", err)
	}
	t.Cleanup(func() { restarted.Close() })

	res, err := restarted.GC(context.Background())
	if err != nil {
		t.Fatalf("GC: %v", err)
	}
	if res.BlobsDeleted != 0 || !tr.blobStored(t, orphan) {
		t.Fatalf("first collection after a restart took a blob promised before it: %+v", res)
	}

	restarted.touches.prune(time.Now().Add(time.Hour)) // the grace period has passed
	if res, err := restarted.GC(context.Background()); err != nil || res.BlobsDeleted != 1 || tr.blobStored(t, orphan) {
		t.Errorf("after the grace period: %+v, %v", res, err)
	}
}

// recorded reports whether the set holds an entry for d itself, which
// since does not tell apart from the set's start-up caution.
func (t *touchSet) recorded(d digest.Digest) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.m[d]
	return ok
}
