package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// One platform's manifest of a multi-platform image an App uses could be
// deleted (202): CanDelete was asked about its own names only, and the
// index an App pinned then pointed at a manifest the collector took, so
// nodes of that platform could no longer pull it. The names of the
// indexes listing it (in turn) are asked about too.
func TestDeletingAPlatformOfAnImageInUseIsRefused(t *testing.T) {
	var pinned atomic.Value
	pinned.Store("")
	tr := newTestRegistry(t, func(c *Config) {
		c.CanDelete = func(_ context.Context, repo, ref string) error {
			if ref == pinned.Load().(string) || ref == "prod" {
				return errors.New("used by app team/web")
			}
			return nil
		}
	})
	cfg := []byte(`{"architecture":"amd64","os":"linux"}`)
	tr.uploadBlob(t, "team/app", adminToken, cfg)
	man := manifestJSON(t, cfg)
	md := digest.FromBytes(man)
	if resp, b := tr.putManifest(t, "team/app", md.String(), adminToken, man); resp.StatusCode != http.StatusCreated {
		t.Fatalf("put the platform manifest: %d %s", resp.StatusCode, b)
	}
	index := func(kids ...digest.Digest) string {
		var ms []string
		for _, k := range kids {
			ms = append(ms, fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":%d,"platform":{"architecture":"amd64","os":"linux"}}`, ocispec.MediaTypeImageManifest, k, len(man)))
		}
		return fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[%s]}`, ocispec.MediaTypeImageIndex, strings.Join(ms, ","))
	}
	put := func(ref, body string) {
		t.Helper()
		resp, b := tr.do(t, "PUT", "/v2/team/app/manifests/"+ref, adminToken, strings.NewReader(body), map[string]string{"Content-Type": ocispec.MediaTypeImageIndex})
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("put index %s: %d %s", ref, resp.StatusCode, b)
		}
	}
	// An index of the platform, and an index of that index, which the
	// App runs by digest.
	inner := index(md)
	put("inner", inner)
	outer := strings.Replace(index(digest.FromString(inner)), fmt.Sprint(len(man)), fmt.Sprint(len(inner)), 1)
	outer = strings.Replace(outer, ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex, 1)
	pinned.Store(digest.FromString(outer).String())
	put(pinned.Load().(string), outer)

	resp, body := tr.do(t, "DELETE", "/v2/team/app/manifests/"+md.String(), adminToken, nil, nil)
	e := wantError(t, resp, body, http.StatusConflict, codeDenied)
	if !strings.Contains(e.Message, "lists it") || !strings.Contains(e.Message, "used by app team/web") {
		t.Errorf("refusal %q does not say which index lists it and who uses it", e.Message)
	}
	if resp, b := tr.do(t, "GET", "/v2/team/app/manifests/"+md.String(), adminToken, nil, map[string]string{"Accept": ocispec.MediaTypeImageManifest}); resp.StatusCode != http.StatusOK {
		t.Fatalf("the platform manifest is gone after a refused delete: %d %s", resp.StatusCode, b)
	}
	// The index nobody uses directly goes; then nothing lists the
	// platform manifest, and it goes too.
	pinned.Store("none")
	resp, body = tr.do(t, "DELETE", "/v2/team/app/manifests/"+md.String(), adminToken, nil, nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("deleting a platform of images nobody uses: %d %s", resp.StatusCode, body)
	}
}

// A store that cannot be read was answered "cannot be deleted … force
// it" (409): following the advice deleted the image with no check at
// all. It is 503, to be retried.
func TestDeleteWhileInUseCannotBeToldIs503(t *testing.T) {
	tr := newTestRegistry(t, func(c *Config) {
		c.CanDelete = func(context.Context, string, string) error {
			return fmt.Errorf("%w: list apps: etcd is down", v1.ErrUnavailable)
		}
	})
	tr.push(t, mustRandom(t), "team/app:v1", aliceToken)
	resp, body := tr.do(t, "DELETE", "/v2/team/app/manifests/v1", aliceToken, nil, nil)
	e := wantError(t, resp, body, http.StatusServiceUnavailable, codeUnavailable)
	if strings.Contains(e.Message, "force") {
		t.Errorf("message %q advises forcing the delete", e.Message)
	}
}
