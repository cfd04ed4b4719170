package notify

import (
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// Nodes may create Events about their own instances (the API server sets
// Source "agent/<node>"). ObserveEvent, fed by watchEvents with every new
// Event, once looked only at Reason: an agent's event about an Instance
// with reason RolledBack became a deploy notification with the node's own
// text. Only events about an App, not from an agent, are deploys.
func TestNodeEventsDoNotBecomeDeployNotifications(t *testing.T) {
	e := newEnv(t, true, nil)
	rcv := newReceiver(t, nil)
	e.notifier(t, "chat", v1.NotifierWebhook, rcv.URL+"/hook")
	e.m.ObserveEvent(&v1.Event{
		Metadata: v1.ObjectMeta{Name: "web-x.1.abcd", Namespace: "default", Labels: map[string]string{v1.LabelApp: "web"}},
		Type:     v1.EventWarning, Reason: "RolledBack", Source: "agent/n1",
		Object:  v1.ObjectRef{Kind: "Instance", Name: "web-x"},
		Message: "forged by a node: rolled back, see http://evil.example/", Time: time.Now(),
	})
	time.Sleep(500 * time.Millisecond)
	for _, r := range rcv.requests() {
		t.Errorf("a node's event was sent as a deploy notification: %s", r.body)
	}
}
