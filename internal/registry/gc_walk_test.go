package registry

import (
	"net/http"
	"testing"

	"github.com/opencontainers/go-digest"
)

// The walk over every stored blob runs before the sweep takes the lock,
// so that pushes are not held for as long as it takes; a candidate that a
// push touched meanwhile (here a HEAD, which promises the blob to the
// client) is kept, and one nothing touched goes.
func TestGCKeepsACandidateTouchedBetweenTheWalkAndTheSweep(t *testing.T) {
	tr := newTestRegistry(t, nil)
	kept, dropped := []byte("asked for after the walk"), []byte("nobody asks for this")
	tr.uploadBlob(t, "team/app", adminToken, kept)
	tr.uploadBlob(t, "team/app", adminToken, dropped)
	tr.age(t)
	ran := false
	gcBeforeSweep = func() {
		ran = true
		// The lock is free here: a HEAD does not wait for the sweep.
		resp, body := tr.do(t, "HEAD", "/v2/team/app/blobs/"+digest.FromBytes(kept).String(), adminToken, nil, nil)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("HEAD between the walk and the sweep: %d %s", resp.StatusCode, body)
		}
	}
	t.Cleanup(func() { gcBeforeSweep = nil })
	res := tr.gc(t)
	if !ran {
		t.Fatal("the hook between the walk and the sweep did not run")
	}
	if !tr.blobStored(t, digest.FromBytes(kept)) {
		t.Errorf("a blob promised to a client after the walk was deleted: %+v", res)
	}
	if tr.blobStored(t, digest.FromBytes(dropped)) {
		t.Errorf("an untouched unreferenced blob survived: %+v", res)
	}
	if res.BlobsInFlight != 1 || res.BlobsDeleted != 1 {
		t.Errorf("result %+v; want one blob deleted and one in flight", res)
	}
}
