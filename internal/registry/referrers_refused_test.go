package registry

import (
	"bytes"
	"net/http"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// A manifest with a subject gets its referrers entry, and the PUT its
// OCI-Subject header, only if the engine stores it. A refused PUT used to
// answer with OCI-Subject, telling an OCI 1.1 client that the registry
// had processed the subject of a manifest it did not store, and left its
// entry on disk until the next gc. An entry an earlier push of the same
// manifest wrote stays when a later PUT of it is refused.
func TestManifestPUTRefusedLeavesNoSubject(t *testing.T) {
	tr := newTestRegistry(t, nil)
	config := []byte(`{"architecture":"amd64","os":"linux"}`)
	subject := digest.FromString("a subject manifest")
	man := manifestWith(t, map[string]any{
		"artifactType": "application/vnd.example.sbom",
		"subject":      ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: subject, Size: 100},
	}, config)
	d := digest.FromBytes(man)
	// The steps run in order, on one registry.
	for _, step := range []struct {
		name        string
		before      func()
		contentType string
		status      int
		entry       bool // the referrers index holds the manifest afterwards
	}{
		{name: "refused: its config was never uploaded", contentType: ocispec.MediaTypeImageManifest,
			status: http.StatusBadRequest},
		{name: "stored", before: func() { tr.uploadBlob(t, "team/app", adminToken, config) }, contentType: ocispec.MediaTypeImageManifest,
			status: http.StatusCreated, entry: true},
		{name: "refused again once stored: the Content-Type does not match", contentType: "application/vnd.docker.distribution.manifest.v2+json",
			status: http.StatusBadRequest, entry: true},
	} {
		if step.before != nil {
			step.before()
		}
		resp, body := tr.do(t, "PUT", "/v2/team/app/manifests/"+d.String(), adminToken, bytes.NewReader(man),
			map[string]string{"Content-Type": step.contentType})
		if resp.StatusCode != step.status {
			t.Fatalf("%s: PUT %d %s, want %d", step.name, resp.StatusCode, body, step.status)
		}
		wantHeader := ""
		if step.status == http.StatusCreated {
			wantHeader = subject.String()
		}
		if got := resp.Header.Get("OCI-Subject"); got != wantHeader {
			t.Errorf("%s: OCI-Subject %q, want %q", step.name, got, wantHeader)
		}
		entries, err := tr.referrers.list("team/app", subject)
		if err != nil {
			t.Fatal(err)
		}
		has := false
		for _, e := range entries {
			has = has || e.Digest == d
		}
		if has != step.entry || len(entries) > 1 {
			t.Errorf("%s: referrers index entries %v, want the manifest's: %v", step.name, entries, step.entry)
		}
	}
}
