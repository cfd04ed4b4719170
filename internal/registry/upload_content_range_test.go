package registry

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// startEmptyUpload starts an upload in team/app and returns its location.
func startEmptyUpload(t *testing.T, tr *testRegistry) string {
	t.Helper()
	resp, b := tr.do(t, "POST", "/v2/team/app/blobs/uploads/", adminToken, nil, nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: %d %s", resp.StatusCode, b)
	}
	return strings.TrimPrefix(resp.Header.Get("Location"), tr.srv.URL)
}

// A PUT that completed an upload with a malformed Content-Range got the
// engine's 500: the front end checked the header only on PATCH.
func TestUploadPUTWithMalformedContentRangeIs416(t *testing.T) {
	tr := newTestRegistry(t, nil)
	loc := startEmptyUpload(t, tr)
	resp, b := tr.do(t, "PUT", loc+"&digest="+digest.FromString("x").String(), adminToken, strings.NewReader("x"),
		map[string]string{"Content-Range": "bytes 0-0/1", "Content-Type": "application/octet-stream"})
	wantError(t, resp, b, http.StatusRequestedRangeNotSatisfiable, codeBlobUploadInvalid)
}

// A PATCH whose Content-Range matched the front end's START-END pattern
// but overflowed int64, or ran backwards, got the engine's 500.
func TestUploadPATCHWithOverflowingOrBackwardContentRangeIs416(t *testing.T) {
	tr := newTestRegistry(t, nil)
	loc := startEmptyUpload(t, tr)
	for _, cr := range []string{"0-99999999999999999999", "99999999999999999999-0", "5-4"} {
		resp, b := tr.do(t, "PATCH", loc, adminToken, strings.NewReader("x"),
			map[string]string{"Content-Range": cr, "Content-Type": "application/octet-stream"})
		if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
			t.Errorf("PATCH with Content-Range %q: %d %s, want 416", cr, resp.StatusCode, b)
		}
	}
}

// A chunk sent with Transfer-Encoding: chunked (no Content-Length) whose
// Content-Range did not start where the upload ended was appended at the
// end anyway with 202, corrupting the upload: the engine checks the range
// only when Content-Length is present.
func TestUploadChunkedPATCHOutOfOrderIs416(t *testing.T) {
	tr := newTestRegistry(t, nil)
	loc := startEmptyUpload(t, tr)
	resp, b := tr.do(t, "PATCH", loc, adminToken, strings.NewReader("hello"),
		map[string]string{"Content-Range": "0-4", "Content-Type": "application/octet-stream"})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("PATCH 1: %d %s", resp.StatusCode, b)
	}
	loc = strings.TrimPrefix(resp.Header.Get("Location"), tr.srv.URL)
	chunked := func(cr, data string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest("PATCH", tr.srv.URL+loc, io.NopCloser(strings.NewReader(data)))
		req.ContentLength = -1
		req.SetBasicAuth("x", adminToken)
		req.Header.Set("Content-Range", cr)
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, body
	}
	// Overlaps bytes 2-4 of the first chunk.
	resp, b = chunked("2-6", "world")
	wantError(t, resp, b, http.StatusRequestedRangeNotSatisfiable, codeRangeInvalid)
	// In order, it is taken.
	resp, b = chunked("5-9", "world")
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Range") != "0-9" {
		t.Fatalf("in-order chunked PATCH: %d %s (Range %s), want 202 and 0-9", resp.StatusCode, b, resp.Header.Get("Range"))
	}
	loc = strings.TrimPrefix(resp.Header.Get("Location"), tr.srv.URL)
	resp, b = tr.do(t, "PUT", loc+"&digest="+digest.FromString("helloworld").String(), adminToken, nil, nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %d %s", resp.StatusCode, b)
	}
}
