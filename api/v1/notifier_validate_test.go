package v1

import (
	"strings"
	"testing"
)

// A Notifier's headers are checked when it is stored: a header name with
// a space or a value with a line break was once stored with 201, and then
// every delivery failed inside net/http (retried to the end as if the
// network had failed). Headers the delivery sets itself are refused too,
// rather than silently overridden.
func TestNotifierHeadersAreValidated(t *testing.T) {
	for _, tc := range []struct {
		headers map[string]string
		field   string // "" for valid
	}{
		{map[string]string{"Authorization": "Bearer x", "X-Token": "a b c"}, ""},
		{map[string]string{"X Token": "a"}, `spec.headers["X Token"]`},
		{map[string]string{"X-Other": "b\r\nInjected: 1"}, `spec.headers["X-Other"]`},
		{map[string]string{"": "a"}, `spec.headers[""]`},
		{map[string]string{"host": "evil.example"}, `spec.headers["host"]`},
		{map[string]string{"Content-Type": "text/plain"}, `spec.headers["Content-Type"]`},
		{map[string]string{"X-Gantry-Event": "deploy/succeeded"}, `spec.headers["X-Gantry-Event"]`},
		// One header, sent with either value at random.
		{map[string]string{"X-Token": "a", "x-token": "b"}, `spec.headers["x-token"]`},
	} {
		n := &Notifier{Metadata: ObjectMeta{Name: "h", Namespace: "default"},
			Spec: NotifierSpec{Type: NotifierWebhook, URL: "https://hooks.example.com/x", Headers: tc.headers}}
		errs := n.Validate()
		switch {
		case tc.field == "" && len(errs) > 0:
			t.Errorf("%v: refused: %v", tc.headers, errs)
		case tc.field != "" && (len(errs) != 1 || errs[0].Field != tc.field || errs[0].Message == ""):
			t.Errorf("%v: %v; want one error on %s", tc.headers, errs, tc.field)
		}
	}
}

// A rule that named the same notifier twice delivered every transition
// twice to it: the second mention is refused.
func TestAlertRuleNamesANotifierOnce(t *testing.T) {
	r := &AlertRule{Metadata: ObjectMeta{Name: "r", Namespace: "default"},
		Spec: AlertRuleSpec{Condition: AlertNodeNotReady, Notifiers: []string{"chat", "mail", "chat"}}}
	errs := r.Validate()
	if len(errs) != 1 || errs[0].Field != "spec.notifiers[2]" || !strings.Contains(errs[0].Message, "spec.notifiers[0]") {
		t.Fatalf("errors %v; want one on spec.notifiers[2] naming spec.notifiers[0]", errs)
	}
}

// urlFrom was checked only for being set: {} or a name no Secret can have
// were stored, and every delivery failed later ("secret  key , which does
// not exist").
func TestNotifierURLFromIsValidated(t *testing.T) {
	for _, tc := range []struct {
		ref    SecretRef
		fields []string // none for valid
	}{
		{SecretRef{Name: "hooks", Key: "url"}, nil},
		{SecretRef{Name: "hooks", Key: "SLACK_URL.v2"}, nil},
		{SecretRef{}, []string{"spec.urlFrom.name", "spec.urlFrom.key"}},
		{SecretRef{Name: "Bad Name!", Key: "url"}, []string{"spec.urlFrom.name"}},
		{SecretRef{Name: "hooks", Key: "a b"}, []string{"spec.urlFrom.key"}},
		{SecretRef{Name: "hooks", Key: ".."}, []string{"spec.urlFrom.key"}},
	} {
		ref := tc.ref
		n := &Notifier{Metadata: ObjectMeta{Name: "h", Namespace: "default"},
			Spec: NotifierSpec{Type: NotifierSlack, URLFrom: &ref}}
		errs := n.Validate()
		var got []string
		for _, e := range errs {
			got = append(got, e.Field)
		}
		if strings.Join(got, ",") != strings.Join(tc.fields, ",") {
			t.Errorf("urlFrom %+v: errors %v; want on %v", tc.ref, errs, tc.fields)
		}
	}
}
