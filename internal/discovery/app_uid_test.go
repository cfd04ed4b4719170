package discovery_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/discovery"
	"github.com/gantry-dev/gantry/internal/store/storetest"
)

// An instance labelled with the UID of a deleted App of the same name is
// retired by the controller, but until then it was ready under the App's
// name and got the new App's traffic and DNS names.
func TestInstancesOfADeletedNamesakeAppGetNoTraffic(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := storetest.New(t)
	app := createWeb(ctx, t, s, webPort)
	if app.Metadata.UID == "" {
		t.Fatal("the store gave the App no UID")
	}
	now := time.Now()
	tests := []struct {
		name     string
		uid      *string // the app-uid label; nil for none
		deleting bool
		want     string // "ready" or "draining"
	}{
		{name: "web-own", uid: &app.Metadata.UID, want: "ready"},
		{name: "web-unlabelled", want: "ready"},
		{name: "web-namesake", uid: ptr("uid-of-a-deleted-web"), want: "draining"},
		{name: "web-namesake-empty", uid: ptr(""), want: "draining"},
		{name: "web-namesake-deleting", uid: ptr("uid-of-a-deleted-web"), deleting: true, want: "draining"},
	}
	for k, tt := range tests {
		i := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"}, Metadata: v1.ObjectMeta{Name: tt.name, Namespace: "default"},
			Spec: v1.InstanceSpec{App: "web", Node: "n1"}, Status: v1.InstanceStatus{IP: fmt.Sprintf("10.0.0.%d", 2+k), Ready: true}}
		i.Metadata.Labels = map[string]string{v1.LabelApp: "web"}
		if tt.uid != nil {
			i.Metadata.Labels[v1.LabelAppUID] = *tt.uid
		}
		if tt.deleting {
			i.Metadata.Deleting = &now
		}
		if err := s.Create(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	w := startWatcher(ctx, s)
	var svc *discovery.Service
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if svc = w.Current().Service("default", "web"); svc != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no snapshot of web")
		}
	}
	names := func(eps []discovery.Endpoint) []string {
		var out []string
		for _, e := range eps {
			out = append(out, e.Instance)
		}
		return out
	}
	ready, all, draining := names(svc.Ready), names(svc.All), names(svc.Draining)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gotReady, gotAll, gotDraining := slices.Contains(ready, tt.name), slices.Contains(all, tt.name), slices.Contains(draining, tt.name)
			want := tt.want == "ready"
			if gotReady != want || gotAll != want || gotDraining == want {
				t.Errorf("ready %v, all %v, draining %v; want %s", gotReady, gotAll, gotDraining, tt.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
