package registry

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// Every HEAD on a blob, of any digest, existing or not, once added to the
// touch set before the engine answered, and the set dropped only entries
// older than keep (at least 1h): a reader HEADing made-up digests grew it
// without bound, and past touchSetPruneAt each new entry scanned the whole
// map under its mutex. A HEAD now records only a blob the engine found.
func TestBlobHEADRecordsOnlyBlobsThatExist(t *testing.T) {
	tr := newTestRegistry(t, nil)
	made := digest.FromString("no such blob")
	if resp, _ := tr.do(t, "HEAD", "/v2/team/app/blobs/"+made.String(), adminToken, nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("HEAD of a made-up digest: %d, want 404", resp.StatusCode)
	}
	if tr.touches.recorded(made) {
		t.Errorf("a HEAD answered 404 recorded %s in the touch set", made)
	}
	stored := tr.uploadBlob(t, "team/app", adminToken, []byte("layer"))
	tr.touches.prune(time.Now().Add(time.Hour))
	if resp, _ := tr.do(t, "HEAD", "/v2/team/app/blobs/"+stored.String(), adminToken, nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("HEAD of a stored blob: %d, want 200", resp.StatusCode)
	}
	if !tr.touches.since(stored, time.Now().Add(-time.Minute)) {
		t.Errorf("a HEAD answered 200 did not record %s in the touch set", stored)
	}
}

// The set stays within touchSetPruneAt even when every entry is younger
// than keep; what it drops to stay there, the collector keeps (since
// answers yes) until the cutoff passes the dropped entries' time.
func TestTouchSetStaysBoundedAndErrsOnTheSafeSide(t *testing.T) {
	ts := touchSet{keep: time.Hour}
	now := time.Now()
	first := digest.FromString("0")
	for i := 0; i < touchSetPruneAt+1000; i++ {
		ts.add(digest.FromString(fmt.Sprint(i)), now.Add(time.Duration(i)*time.Microsecond))
	}
	if n := len(ts.m); n > touchSetPruneAt {
		t.Fatalf("touch set holds %d entries; its bound is %d", n, touchSetPruneAt)
	}
	if _, ok := ts.m[first]; ok {
		t.Fatalf("the oldest entry was kept and newer ones dropped")
	}
	if !ts.since(first, now.Add(-time.Minute)) {
		t.Errorf("a blob dropped from the full set no longer counts as touched: the collector could delete it under a push")
	}
	if ts.since(first, now.Add(time.Hour)) {
		t.Errorf("a dropped blob counts as touched after a cutoff later than every drop")
	}
}
