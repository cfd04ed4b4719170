package server

import (
	"context"
	"strings"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/apps"
	"github.com/gantry-dev/gantry/internal/store"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// An image may not be deleted while an App's current revision or its
// stable one (where a failed rollout goes back to) uses it.
func TestImageInUse(t *testing.T) {
	ctx := context.Background()
	s := &Server{Store: storetest.New(t)}
	deploy := func(image string) {
		t.Helper()
		a := &v1.App{TypeMeta: v1.TypeMeta{Kind: "App"}, Metadata: v1.ObjectMeta{Name: "web", Namespace: "default"}}
		a.Spec.Image = image
		v1.SetDefaults(a)
		prev, err := store.Get[*v1.App](ctx, s.Store, "default", "web")
		if err != nil {
			prev = nil
		}
		if _, err := apps.Save(ctx, s.Store, apps.Change{App: a, Prev: prev, Image: "reg.local:5000/default/" + image, ImageDigest: "sha256:" + strings.Repeat(image[len(image)-1:], 64)}); err != nil {
			t.Fatal(err)
		}
	}
	deploy("web:1")
	deploy("web:2")
	deploy("web:3")
	if _, err := store.Mutate(ctx, s.Store, "default", "web", func(a *v1.App) error {
		a.Status.StableRevision = 2
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ref, want string
	}{
		{"3", "revision 3, its current revision"},
		{"2", "revision 2, its stable revision"},
		{"sha256:" + strings.Repeat("2", 64), "revision 2, its stable revision"},
		{"1", ""},
	} {
		err := s.imageInUse(ctx, "default/web", tc.ref)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("delete default/web:%s: got %v, want %q", tc.ref, err, tc.want)
		}
	}
	if err := s.imageInUse(ctx, "other/web", "3"); err != nil {
		t.Errorf("another repository's tag: %v", err)
	}
}

// An App whose image has no tag runs :latest (when admission could not
// pin a digest, its instances pull the untagged name), so deleting that
// tag is refused too; it was not, as the revision's tag read as "".
func TestImageInUseUntaggedIsLatest(t *testing.T) {
	ctx := context.Background()
	s := &Server{Store: storetest.New(t)}
	a := &v1.App{TypeMeta: v1.TypeMeta{Kind: "App"}, Metadata: v1.ObjectMeta{Name: "web", Namespace: "default"}}
	a.Spec.Image = "web"
	v1.SetDefaults(a)
	if _, err := apps.Save(ctx, s.Store, apps.Change{App: a, Image: "reg.local:5000/default/web"}); err != nil {
		t.Fatal(err)
	}
	if err := s.imageInUse(ctx, "default/web", "latest"); err == nil || !strings.Contains(err.Error(), "current revision") {
		t.Errorf("deleting default/web:latest, which an App runs untagged: %v", err)
	}
	if err := s.imageInUse(ctx, "default/web", "v2"); err != nil {
		t.Errorf("deleting another tag: %v", err)
	}
}
