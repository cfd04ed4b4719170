package events

import (
	"context"
	"log/slog"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// An App's event names its App and the revision it is about, which the
// App may have left by the time the event is read (a deploy notification
// needs it); other objects' events name their App only.
func TestEventLabels(t *testing.T) {
	app := &v1.App{TypeMeta: v1.TypeMeta{Kind: "App"}, Metadata: v1.ObjectMeta{Name: "web", Namespace: "team"}}
	app.Status.Revision = 7
	inst := &v1.Instance{TypeMeta: v1.TypeMeta{Kind: "Instance"},
		Metadata: v1.ObjectMeta{Name: "web-1", Namespace: "team", Labels: map[string]string{v1.LabelApp: "web", v1.LabelRevision: "6"}}}
	node := &v1.Node{TypeMeta: v1.TypeMeta{Kind: "Node"}, Metadata: v1.ObjectMeta{Name: "n1"}}
	tests := []struct {
		obj  v1.Object
		want map[string]string
	}{
		{app, map[string]string{v1.LabelApp: "web", v1.LabelRevision: "7"}},
		{inst, map[string]string{v1.LabelApp: "web"}},
		{node, nil},
	}
	for _, tt := range tests {
		var got *v1.Event
		r := NewRecorder(nil, "test", slog.New(slog.DiscardHandler))
		r.Listen(func(e *v1.Event) { got = e })
		r.Eventf(context.Background(), tt.obj, v1.EventNormal, "Test", "about %s", tt.obj.GetMeta().Name)
		if got == nil {
			t.Fatalf("%s: no event", tt.obj.GetType().Kind)
		}
		if len(got.Metadata.Labels) != len(tt.want) {
			t.Errorf("%s: labels %v; want %v", tt.obj.GetType().Kind, got.Metadata.Labels, tt.want)
		}
		for k, v := range tt.want {
			if got.Metadata.Labels[k] != v {
				t.Errorf("%s: label %s = %q; want %q", tt.obj.GetType().Kind, k, got.Metadata.Labels[k], v)
			}
		}
	}
}
