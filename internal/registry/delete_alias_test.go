package registry

import (
	"context"
	"net/http"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// A manifest pushed under sha512 (with ?tag=) and deleted under the
// sha256 the engine also stores it by: the delete once answered 202 but
// left the sha512 alias and the tag that points through it, so the
// "deleted" manifest was still served and Resolve still pinned it.
func TestDeleteBySHA256TakesTheSHA512AliasAndTag(t *testing.T) {
	tr := newTestRegistry(t, nil)
	config := []byte(`{"architecture":"amd64","os":"linux"}`)
	tr.uploadBlob(t, "team/app", adminToken, config)
	man := manifestJSON(t, config)
	d := digest.SHA512.FromBytes(man)
	if resp, body := tr.putManifest(t, "team/app", d.String()+"?tag=v1", adminToken, man); resp.StatusCode != http.StatusCreated {
		t.Fatalf("put: %d %s", resp.StatusCode, body)
	}
	resp, body := tr.do(t, "DELETE", "/v2/team/app/manifests/"+digest.FromBytes(man).String(), adminToken, nil, nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("delete: %d %s", resp.StatusCode, body)
	}
	for _, ref := range []string{d.String(), "v1"} {
		if resp, _ := tr.do(t, "GET", "/v2/team/app/manifests/"+ref, adminToken, nil, map[string]string{"Accept": ocispec.MediaTypeImageManifest}); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s still served after the manifest was deleted: %d", ref, resp.StatusCode)
		}
	}
	if got, err := tr.Resolve(context.Background(), "team/app", "v1"); err == nil {
		t.Errorf("Resolve of the deleted manifest's tag: %s", got)
	}
}
