package registry

import (
	"bytes"
	"context"
	"net/http"
	"testing"

	"github.com/opencontainers/go-digest"
)

// Removing an image frees its space for the quota once gc has run. A
// layer shared with another namespace's image (a base layer mounted from
// library/…) stayed linked in the repository after its manifest was
// deleted: gc unlinked only the blobs it deleted, and this one lives on
// for the other namespace. The quota went on counting it for good.
func TestGCUnlinksASharedLayerFromARepositoryThatNoLongerUsesIt(t *testing.T) {
	tr := newTestRegistry(t, func(c *Config) {
		c.GCGrace = -1
		c.StorageQuota = func(_ context.Context, ns string) (int64, error) {
			if ns == "team" {
				return 10000, nil
			}
			return 0, nil
		}
	})
	layer, cfgB := startOnABase(t, tr)
	man := manifestJSON(t, cfgB, layer)
	if resp, b := tr.putManifest(t, "team/app", "v1", adminToken, man); resp.StatusCode != http.StatusCreated {
		t.Fatalf("put app: %d %s", resp.StatusCode, b)
	}
	used, _, err := tr.storageUsage(context.Background(), "team", "")
	if err != nil {
		t.Fatal(err)
	}
	if used < 5000 {
		t.Fatalf("used %d before delete, want >= 5000", used)
	}
	// gantry image rm team/app@DIGEST, then gantry registry gc.
	if resp, b := tr.do(t, "DELETE", "/v2/team/app/manifests/"+digest.FromBytes(man).String(), adminToken, nil, nil); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("delete: %d %s", resp.StatusCode, b)
	}
	tr.age(t)
	tr.gc(t)
	used, _, err = tr.storageUsage(context.Background(), "team", "")
	if err != nil {
		t.Fatal(err)
	}
	if used != 0 {
		t.Errorf("team has no manifest left after rm + gc, but its registryStorage still counts %d bytes (the shared layer stays linked in team/app)", used)
	}
}

// A manifest may name a non-distributable layer by URL; the engine then
// does not check that the repository has the blob. gc counted the digest
// as in use all the same, so a user of one namespace could keep any blob
// of another (a layer of a deleted image it cannot read) on disk for
// ever by naming its digest. Only what a repository links counts.
func TestGCIgnoresAForeignLayerTheRepositoryDoesNotLink(t *testing.T) {
	tr := newTestRegistry(t, func(c *Config) { c.GCGrace = -1 })
	secret := bytes.Repeat([]byte{'S'}, 3000)
	cfg := []byte(`{"s":1}`)
	tr.uploadBlob(t, "other/secret", adminToken, secret)
	tr.uploadBlob(t, "other/secret", adminToken, cfg)
	man := manifestJSON(t, cfg, secret)
	if resp, b := tr.putManifest(t, "other/secret", "v1", adminToken, man); resp.StatusCode != http.StatusCreated {
		t.Fatalf("put: %d %s", resp.StatusCode, b)
	}
	// alice (write on team, nothing on other) names the digest as a foreign layer.
	acfg := []byte(`{"a":1}`)
	tr.uploadBlob(t, "team/app", aliceToken, acfg)
	foreign := manifestWith(t, map[string]any{"layers": []map[string]any{{
		"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar",
		"digest":    digest.FromBytes(secret), "size": len(secret), "urls": []string{"https://example.com/x"}}}}, acfg)
	if resp, b := tr.putManifest(t, "team/app", "v1", aliceToken, foreign); resp.StatusCode != http.StatusCreated {
		t.Skipf("foreign layer refused: %d %s", resp.StatusCode, b)
	}
	if resp, b := tr.do(t, "DELETE", "/v2/other/secret/manifests/"+digest.FromBytes(man).String(), adminToken, nil, nil); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("delete: %d %s", resp.StatusCode, b)
	}
	tr.age(t)
	tr.gc(t)
	if tr.blobStored(t, digest.FromBytes(secret)) {
		t.Errorf("the deleted image's layer survives gc: a manifest of another namespace names its digest as a foreign layer")
	}
}

// A link no manifest uses yet is a push in flight while it is young: the
// blobs of an image are mounted or uploaded before its manifest.
func TestGCKeepsTheLinksOfAPushInFlight(t *testing.T) {
	tr := newTestRegistry(t, nil)
	layer, cfgB := startOnABase(t, tr)
	if res := tr.gc(t); res.LinksRemoved != 0 {
		t.Errorf("gc removed %d links of a push in flight: %+v", res.LinksRemoved, res)
	}
	if resp, b := tr.putManifest(t, "team/app", "v1", adminToken, manifestJSON(t, cfgB, layer)); resp.StatusCode != http.StatusCreated {
		t.Fatalf("the manifest of the push, after gc: %d %s", resp.StatusCode, b)
	}
}

// startOnABase pushes shared/base:v1 (one layer of 5000 bytes) and starts
// a push of team/app on it: the layer mounted from the base, a config of
// its own uploaded, no manifest yet. It returns the layer and the config.
func startOnABase(t *testing.T, tr *testRegistry) (layer, config []byte) {
	t.Helper()
	layer = bytes.Repeat([]byte{'L'}, 5000)
	base, config := []byte(`{"a":1}`), []byte(`{"b":2}`)
	tr.uploadBlob(t, "shared/base", adminToken, layer)
	tr.uploadBlob(t, "shared/base", adminToken, base)
	if resp, b := tr.putManifest(t, "shared/base", "v1", adminToken, manifestJSON(t, base, layer)); resp.StatusCode != http.StatusCreated {
		t.Fatalf("put base: %d %s", resp.StatusCode, b)
	}
	resp, b := tr.do(t, "POST", "/v2/team/app/blobs/uploads/?mount="+digest.FromBytes(layer).String()+"&from=shared/base", adminToken, nil, nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("mount: %d %s", resp.StatusCode, b)
	}
	tr.uploadBlob(t, "team/app", adminToken, config)
	return layer, config
}
