package main

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
	"github.com/gantry-dev/gantry/internal/notify"
)

func init() {
	extraColumns["AlertRule"] = []column{
		{header: "APP", value: func(o v1.Object) string { return orDash(o.(*v1.AlertRule).Spec.App) }},
		{header: "CONDITION", value: func(o v1.Object) string { return alertCondition(o.(*v1.AlertRule).Spec) }},
		{header: "STATE", value: func(o v1.Object) string {
			s := o.(*v1.AlertRule).Status.State
			if s == "" {
				return v1.AlertInactive
			}
			return s
		}},
		{header: "SINCE", value: func(o v1.Object) string {
			if s := o.(*v1.AlertRule).Status.Since; s != nil {
				return age(*s)
			}
			return "-"
		}},
		{header: "SUBJECTS", value: func(o v1.Object) string { return subjects(o.(*v1.AlertRule).Status.Subjects, 3) }},
		{header: "VALUE", wide: true, value: func(o v1.Object) string {
			return strconv.FormatFloat(o.(*v1.AlertRule).Status.Value, 'f', -1, 64)
		}},
		{header: "NOTIFIERS", wide: true, value: func(o v1.Object) string {
			if n := o.(*v1.AlertRule).Spec.Notifiers; len(n) > 0 {
				return strings.Join(n, ",")
			}
			return "(all)"
		}},
		{header: "MESSAGE", wide: true, value: func(o v1.Object) string { return o.(*v1.AlertRule).Status.Message }},
	}
	extraColumns["Notifier"] = []column{
		{header: "TYPE", value: func(o v1.Object) string { return o.(*v1.Notifier).Spec.Type }},
		{header: "EVENTS", value: func(o v1.Object) string {
			if e := o.(*v1.Notifier).Spec.Events; len(e) > 0 {
				return strings.Join(e, ",")
			}
			return "alerts,deploys"
		}},
		{header: "DELIVERED", value: func(o v1.Object) string { return strconv.Itoa(o.(*v1.Notifier).Status.Delivered) }},
		{header: "FAILED", value: func(o v1.Object) string { return strconv.Itoa(o.(*v1.Notifier).Status.Failed) }},
		{header: "LAST DELIVERY", value: func(o v1.Object) string {
			if t := o.(*v1.Notifier).Status.LastDelivery; t != nil {
				return age(*t) + " ago"
			}
			return "never"
		}},
		{header: "LAST ERROR", wide: true, value: func(o v1.Object) string { return orDash(o.(*v1.Notifier).Status.LastError) }},
	}
}

// alertCondition renders a rule's condition compactly: "restarts >= 3 in
// 5m0s for 1m0s".
func alertCondition(s v1.AlertRuleSpec) string {
	var c string
	switch s.Condition {
	case v1.AlertCPU, v1.AlertMemory:
		c = fmt.Sprintf("%s > %g%%", s.Condition, s.Threshold)
	case v1.AlertRestarts:
		c = fmt.Sprintf("restarts >= %g in %s", s.Threshold, s.Window)
	default:
		c = s.Condition
	}
	if s.For > 0 {
		c += " for " + s.For.String()
	}
	return c
}

// subjects lists the first n subjects and counts the rest.
func subjects(s []string, n int) string {
	if len(s) == 0 {
		return "-"
	}
	if len(s) <= n {
		return strings.Join(s, ",")
	}
	return strings.Join(s[:n], ",") + fmt.Sprintf(" (+%d)", len(s)-n)
}

// stateRank orders firing rules first, then pending, then the rest.
func stateRank(s string) int {
	switch s {
	case v1.AlertFiring:
		return 0
	case v1.AlertPending:
		return 1
	}
	return 2
}

func newAlertCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "alert",
		Short: "Show alert rules and what is firing",
		Long: "Alert rules (kind AlertRule) are evaluated by the server every few seconds over the metrics\n" +
			"window and instance and node states; a rule that holds for its `for` duration fires and\n" +
			"tells its notifiers, and tells them again when it resolves. Create rules with `gantry apply`.",
	}
	cmd.AddCommand(newKindListCmd(g, kindList{
		kind:    "AlertRule",
		short:   "List alert rules with their state, firing first",
		example: "  gantry alert ls\n  gantry alert ls -A -o wide",
		allHelp: "rules of every namespace",
		none:    "No alert rules.",
		less: func(x, y v1.Object) bool {
			a, b := x.(*v1.AlertRule), y.(*v1.AlertRule)
			if ra, rb := stateRank(a.Status.State), stateRank(b.Status.State); ra != rb {
				return ra < rb
			}
			return a.Metadata.Key() < b.Metadata.Key()
		},
	}))
	return cmd
}

func newNotifierCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "notifier",
		Short: "Check the webhooks alerts and deploy events are sent to",
		Long: "Notifiers (kind Notifier) deliver alerts and deploy events to a generic JSON webhook\n" +
			"(type webhook) or a Slack-compatible incoming webhook (type slack). Create them with\n" +
			"`gantry apply`; loopback, link-local and private URLs are refused unless a cluster admin\n" +
			"sets policy.allowPrivateTargets on the namespace.",
	}
	ls := newKindListCmd(g, kindList{
		kind:    "Notifier",
		short:   "List notifiers with their delivery counts",
		example: "  gantry notifier ls\n  gantry notifier ls -o wide   # with the last error",
		allHelp: "notifiers of every namespace",
		none:    "No notifiers.",
	})

	var testOutput string
	test := &cobra.Command{
		Use:   "test NAME",
		Short: "Send a test message through a notifier now and show what happened",
		Long: "Sends one test message, without retries, and prints the answer. Exits 1 if the\n" +
			"message was not delivered, so scripts can check a webhook before relying on it.",
		Example: "  gantry notifier test chat\n  gantry notifier test chat -n team -o json",
		Args:    cobra.ExactArgs(1),
		ValidArgsFunction: func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			return completeNames(cmd.Context(), g, "Notifier"), cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			// Checked before the message is sent: a refusal after it
			// would hide whether it was delivered.
			switch testOutput {
			case "", "text", "json", "yaml":
			default:
				return fmt.Errorf("unknown output format %q: use text, json or yaml", testOutput)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			name := strings.TrimPrefix(args[0], "notifier/")
			var res notify.Result
			if err := c.Sub(cmd.Context(), "POST", "Notifier", g.ns(), name, "test", nil, &res); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			switch testOutput {
			case "json":
				if err := printJSON(w, res); err != nil {
					return err
				}
			case "yaml":
				if err := printYAML(w, res); err != nil {
					return err
				}
			case "", "text":
				took := time.Duration(res.Seconds * float64(time.Second)).Round(time.Millisecond)
				if res.Delivered {
					fmt.Fprintf(w, "notifier/%s: delivered to %s (HTTP %d) in %s\n", name, orDash(res.Target), res.StatusCode, took)
				} else {
					fmt.Fprintf(w, "notifier/%s: NOT delivered to %s after %s: %s\n", name, orDash(res.Target), took, res.Error)
					if res.Refused && !strings.Contains(res.Error, "allowPrivateTargets") {
						fmt.Fprintln(w, "  the target is a loopback, link-local, private or API-server address; a cluster admin can allow it with policy.allowPrivateTargets on the namespace")
					}
				}
			}
			if !res.Delivered {
				return &exitError{1, errSilent}
			}
			return nil
		},
	}
	test.Flags().StringVarP(&testOutput, "output", "o", "text", "text, json or yaml")
	cmd.AddCommand(ls, test)
	return cmd
}

// kindList describes an `ls` subcommand that lists the objects of one
// kind in the current namespace, or every namespace with -A.
type kindList struct {
	kind, short, example string
	allHelp              string                    // help of -A
	none                 string                    // said on stderr when a table would be empty
	less                 func(a, b v1.Object) bool // order; nil keeps the server's
}

func newKindListCmd(g *globals, l kindList) *cobra.Command {
	var all bool
	var output string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   l.short,
		Example: l.example,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			objs, _, err := c.List(cmd.Context(), l.kind, g.listNamespace(all), client.ListOptions{})
			if err != nil {
				return err
			}
			if l.less != nil {
				sort.SliceStable(objs, func(i, j int) bool { return l.less(objs[i], objs[j]) })
			}
			if len(objs) == 0 && (output == "table" || output == "wide") {
				fmt.Fprintln(cmd.ErrOrStderr(), l.none)
				return nil
			}
			return printObjects(cmd.OutOrStdout(), l.kind, output, objs, false, all)
		},
	}
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, l.allHelp)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table, wide, json or yaml")
	return cmd
}
