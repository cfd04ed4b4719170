package notify

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

func firingMessage() Message {
	since := time.Date(2025, 1, 2, 15, 4, 5, 0, time.UTC)
	m := Message{
		Kind: KindAlert, Status: StatusFiring, Namespace: "default", Rule: "web-crashloop",
		Condition: "restarts", Severity: "critical", App: "web",
		Subjects: []string{"instance/web-x7k2p"}, Value: 5, Threshold: 3,
		Message: "instance web-x7k2p restarted 5 times in 5m0s (threshold 3)", Since: &since,
	}
	m.complete(since.Add(time.Second), "https://gantry.example.com:7443")
	return m
}

func TestWebhookPayloadFollowsTheDocumentedSchema(t *testing.T) {
	m := firingMessage()
	b, err := body(v1.NotifierWebhook, &m)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("payload is not JSON: %v\n%s", err, b)
	}
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"app", "cluster", "condition", "id", "kind", "message", "namespace", "rule", "severity", "since", "status", "subjects", "threshold", "time", "value", "version"}
	if !slices.Equal(keys, want) {
		t.Fatalf("keys = %v\nwant   %v", keys, want)
	}
	checks := map[string]any{
		"version": "1", "kind": "alert", "status": "firing", "namespace": "default", "rule": "web-crashloop",
		"condition": "restarts", "severity": "critical", "app": "web", "value": 5.0, "threshold": 3.0,
		"since": "2025-01-02T15:04:05Z", "time": "2025-01-02T15:04:06Z", "cluster": "https://gantry.example.com:7443",
	}
	for k, v := range checks {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if s, _ := got["subjects"].([]any); len(s) != 1 || s[0] != "instance/web-x7k2p" {
		t.Errorf("subjects = %v", got["subjects"])
	}
	if id, _ := got["id"].(string); len(id) != 24 {
		t.Errorf("id = %q, want 24 hex digits", id)
	}
}

func TestMessageIDIsStableForOneEventAndDiffersBetweenEvents(t *testing.T) {
	a, b := firingMessage(), firingMessage()
	if a.ID != b.ID {
		t.Fatalf("same transition got IDs %s and %s", a.ID, b.ID)
	}
	c := firingMessage()
	c.ID, c.Status = "", StatusResolved
	c.complete(time.Now(), "")
	if c.ID == a.ID {
		t.Fatal("firing and resolved share an ID")
	}
}

func TestSlackPayloadHasTextAndAColouredAttachment(t *testing.T) {
	tests := []struct {
		name      string
		msg       Message
		wantText  []string
		wantColor string
	}{
		{"a firing alert is red and says FIRING", firingMessage(), []string{"[FIRING]", "default/web-crashloop", "(critical)", "restarted 5 times"}, "danger"},
		{"a resolved alert is green and says RESOLVED", func() Message {
			m := firingMessage()
			m.Status, m.Message = StatusResolved, "an instance restarting 3 times in 5m0s no longer holds"
			return m
		}(), []string{"[RESOLVED]", "default/web-crashloop", "no longer holds"}, "good"},
		{"a failed deploy names the app and revision", Message{Kind: KindDeploy, Status: StatusFailed, Namespace: "team", App: "api", Revision: 7, Message: "no progress in 60s", Severity: "warning", Time: time.Unix(1700000000, 0)},
			[]string{"[DEPLOY FAILED]", "team/api revision 7", "no progress"}, "danger"},
		{"mrkdwn control characters are escaped", Message{Kind: KindTest, Status: StatusTest, Namespace: "x", Message: "a <b> & c", Time: time.Unix(1, 0)},
			[]string{"a &lt;b&gt; &amp; c"}, "#439FE0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := body(v1.NotifierSlack, &tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			var p struct {
				Text        string `json:"text"`
				Attachments []struct {
					Fallback string `json:"fallback"`
					Color    string `json:"color"`
					Fields   []struct {
						Title, Value string
					} `json:"fields"`
				} `json:"attachments"`
			}
			if err := json.Unmarshal(b, &p); err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.wantText {
				if !strings.Contains(p.Text, w) {
					t.Errorf("text %q lacks %q", p.Text, w)
				}
			}
			if len(p.Attachments) != 1 || p.Attachments[0].Color != tt.wantColor || p.Attachments[0].Fallback != p.Text {
				t.Errorf("attachments = %+v, want one with colour %s and the text as fallback", p.Attachments, tt.wantColor)
			}
		})
	}
}

func TestEventsSelectWhatANotifierGets(t *testing.T) {
	tests := []struct {
		events []string
		kind   string
		want   bool
	}{
		{nil, KindAlert, true},
		{nil, KindDeploy, true},
		{[]string{"alerts"}, KindAlert, true},
		{[]string{"alerts"}, KindDeploy, false},
		{[]string{"deploys"}, KindAlert, false},
		{[]string{"deploys"}, KindTest, true},
	}
	for _, tt := range tests {
		if got := wants(v1.NotifierSpec{Events: tt.events}, tt.kind); got != tt.want {
			t.Errorf("events %v, kind %s: got %v, want %v", tt.events, tt.kind, got, tt.want)
		}
	}
}

// An AlertRule's description reaches both kinds of receiver.
func TestAlertDescriptionIsSent(t *testing.T) {
	m := firingMessage()
	m.Description = "check the <db> pool: https://runbooks.example/db"
	for _, typ := range []string{v1.NotifierSlack, v1.NotifierWebhook} {
		b, err := body(typ, &m)
		if err != nil {
			t.Fatal(err)
		}
		want := "check the"
		if !strings.Contains(string(b), want) || !strings.Contains(string(b), "runbooks.example/db") {
			t.Errorf("%s payload lacks the description: %s", typ, b)
		}
	}
}
