package registry

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Deleting a manifest by its sha512 alias also deletes its sha256 and the
// tags that point at it. The front end once asked CanDelete only about
// the sha512 it was given, so a manifest an App pins (by sha256 and by
// tag) was deleted through its alias with 202, protection and all.
func TestDeleteByAliasAsksCanDeleteAboutEveryNameItTakes(t *testing.T) {
	config := []byte(`{"architecture":"amd64","os":"linux"}`)
	var (
		mu     sync.Mutex
		pinned digest.Digest
		asked  []string
		events []Event
	)
	tr := newTestRegistry(t, func(c *Config) {
		c.OnEvent = func(ev Event) { mu.Lock(); events = append(events, ev); mu.Unlock() }
		c.CanDelete = func(_ context.Context, repo, ref string) error {
			mu.Lock()
			defer mu.Unlock()
			asked = append(asked, ref)
			if ref == "v1" || ref == pinned.String() {
				return errors.New("used by app team/web")
			}
			return nil
		}
	})
	tr.uploadBlob(t, "team/app", adminToken, config)
	man := manifestJSON(t, config)
	mu.Lock()
	pinned = digest.FromBytes(man)
	mu.Unlock()
	if resp, b := tr.putManifest(t, "team/app", "v1", adminToken, man); resp.StatusCode != http.StatusCreated {
		t.Fatalf("put v1: %d %s", resp.StatusCode, b)
	}
	alias := digest.SHA512.FromBytes(man)
	if resp, b := tr.putManifest(t, "team/app", alias.String()+"?tag=v2", adminToken, man); resp.StatusCode != http.StatusCreated {
		t.Fatalf("put sha512: %d %s", resp.StatusCode, b)
	}

	resp, body := tr.do(t, "DELETE", "/v2/team/app/manifests/"+alias.String(), adminToken, nil, nil)
	e := wantError(t, resp, body, http.StatusConflict, codeDenied)
	t.Logf("refusal: %s", e.Message)
	for _, ref := range []string{pinned.String(), alias.String(), "v1", "v2"} {
		if r2, b2 := tr.do(t, "GET", "/v2/team/app/manifests/"+ref, adminToken, nil, map[string]string{"Accept": ocispec.MediaTypeImageManifest}); r2.StatusCode != http.StatusOK {
			t.Errorf("%s is gone after a refused delete of its sha512 alias: %d %s", ref, r2.StatusCode, b2)
		}
	}
	mu.Lock()
	if !slices.Contains(asked, pinned.String()) {
		t.Errorf("CanDelete was asked about %v, not the sha256 the delete takes", asked)
	}
	asked = nil
	mu.Unlock()

	// Forced, everything goes, and each name that went is reported.
	resp, body = tr.do(t, "DELETE", "/v2/team/app/manifests/"+alias.String()+"?force=true", adminToken, nil, nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("forced delete: %d %s", resp.StatusCode, body)
	}
	for _, ref := range []string{pinned.String(), alias.String(), "v1", "v2"} {
		if r2, _ := tr.do(t, "GET", "/v2/team/app/manifests/"+ref, adminToken, nil, map[string]string{"Accept": ocispec.MediaTypeImageManifest}); r2.StatusCode != http.StatusNotFound {
			t.Errorf("%s still served after the forced delete: %d", ref, r2.StatusCode)
		}
	}
	var deleted []string
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		deleted = deleted[:0]
		for _, ev := range events {
			if ev.Action == ActionDelete {
				deleted = append(deleted, ev.Tag+ev.Digest)
			}
		}
		mu.Unlock()
		if len(deleted) >= 4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	slices.Sort(deleted)
	want := []string{pinned.String(), alias.String(), "v1", "v2"}
	slices.Sort(want)
	if !slices.Equal(deleted, want) {
		t.Errorf("delete events for %v, want %v", deleted, want)
	}
}
