package apiserver_test

import (
	"context"
	"strings"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
)

// A rule naming a Notifier that does not exist (a typo) was stored
// without a word, as was the delete of a Notifier a rule names; the rule
// then fired and nobody was told. Both earn a warning.
func TestAlertRulesNamingMissingNotifiersAreWarnedOf(t *testing.T) {
	ts := startServer(t, t.TempDir(), "127.0.0.1:0")
	ctx := context.Background()
	var warnings []string
	c, err := client.New(client.Config{Server: ts.URL, Token: ts.Token, Warnings: func(w string) { warnings = append(warnings, w) }})
	if err != nil {
		t.Fatal(err)
	}
	apply := func(m string) {
		t.Helper()
		o, err := v1.DecodeManifest([]byte(m))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Apply(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	apply("kind: Notifier\nname: chat\ntype: webhook\nurl: https://hooks.example.com/x\n")
	warnings = nil
	apply("kind: AlertRule\nname: down\ncondition: not-ready\nnotifiers: [chat, chatt]\n")
	if got := strings.Join(warnings, "\n"); !strings.Contains(got, `names notifier "chatt", which does not exist`) || strings.Contains(got, `"chat",`) {
		t.Fatalf("warnings %q; want one for chatt only", got)
	}
	warnings = nil
	if _, err := c.Delete(ctx, "Notifier", "default", "chat"); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(warnings, "\n"); !strings.Contains(got, "alertrule/down names notifier chat, which is gone") {
		t.Fatalf("warnings on delete %q; want one naming the rule", got)
	}
}
