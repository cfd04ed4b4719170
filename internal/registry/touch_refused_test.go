package registry

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// gc leaves alone the blobs recorded as used lately, and past the
// record's limit counts every blob as used. A blob is recorded only once
// the engine has it, so that made-up digests (an upload in one POST whose
// body does not match, a mount of a blob nobody has) cannot fill it, as
// a HEAD of a missing blob cannot (TestBlobHEADRecordsOnlyBlobsThatExist).
// A mount that succeeds records its blob.
func TestRefusedUploadsAndMountsRecordNoBlob(t *testing.T) {
	tr := newTestRegistry(t, nil)
	made := digest.FromString("no such blob")
	resp, b := tr.do(t, "POST", "/v2/team/app/blobs/uploads/?digest="+made.String(), aliceToken, strings.NewReader("other"),
		map[string]string{"Content-Type": "application/octet-stream"})
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("POST with a wrong digest: %d %s", resp.StatusCode, b)
	}
	if tr.touches.recorded(made) {
		t.Errorf("an upload refused for its digest recorded %s in the touch set", made)
	}
	made2 := digest.FromString("no such blob either")
	resp, b = tr.do(t, "POST", "/v2/team/app/blobs/uploads/?mount="+made2.String(), aliceToken, nil, nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("mount of a missing blob: %d %s", resp.StatusCode, b)
	}
	if tr.touches.recorded(made2) {
		t.Errorf("a mount of a blob nobody has (202, upload started) recorded %s in the touch set", made2)
	}

	src := mustRandom(t)
	tr.push(t, src, "shared/base:v1", adminToken)
	layers, err := src.Layers()
	if err != nil {
		t.Fatal(err)
	}
	ld, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	afterPush := time.Now()
	resp, b = tr.do(t, "POST", "/v2/team/app/blobs/uploads/?mount="+ld.String()+"&from=shared/base", aliceToken, nil, nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("mount of a blob alice may read: %d %s", resp.StatusCode, b)
	}
	if !tr.touches.since(digest.Digest(ld.String()), afterPush) {
		t.Errorf("a mount that succeeded did not record %s", ld)
	}
}
