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
	var all bool
	var output string
	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List alert rules with their state, firing first",
		Example: "  gantry alert ls\n  gantry alert ls -A -o wide",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ns := g.ns()
			if all {
				ns = ""
			}
			objs, _, err := c.List(cmd.Context(), "AlertRule", ns, client.ListOptions{})
			if err != nil {
				return err
			}
			sort.SliceStable(objs, func(i, j int) bool {
				a, b := objs[i].(*v1.AlertRule), objs[j].(*v1.AlertRule)
				if ra, rb := stateRank(a.Status.State), stateRank(b.Status.State); ra != rb {
					return ra < rb
				}
				return a.Metadata.Key() < b.Metadata.Key()
			})
			if len(objs) == 0 && (output == "table" || output == "wide") {
				fmt.Fprintln(cmd.ErrOrStderr(), "No alert rules.")
				return nil
			}
			return printObjects(cmd.OutOrStdout(), "AlertRule", output, objs, false, all)
		},
	}
	ls.Flags().BoolVarP(&all, "all-namespaces", "A", false, "rules of every namespace")
	ls.Flags().StringVarP(&output, "output", "o", "table", "table, wide, json or yaml")
	cmd.AddCommand(ls)
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
	var all bool
	var output string
	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List notifiers with their delivery counts",
		Example: "  gantry notifier ls\n  gantry notifier ls -o wide   # with the last error",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ns := g.ns()
			if all {
				ns = ""
			}
			objs, _, err := c.List(cmd.Context(), "Notifier", ns, client.ListOptions{})
			if err != nil {
				return err
			}
			if len(objs) == 0 && (output == "table" || output == "wide") {
				fmt.Fprintln(cmd.ErrOrStderr(), "No notifiers.")
				return nil
			}
			return printObjects(cmd.OutOrStdout(), "Notifier", output, objs, false, all)
		},
	}
	ls.Flags().BoolVarP(&all, "all-namespaces", "A", false, "notifiers of every namespace")
	ls.Flags().StringVarP(&output, "output", "o", "table", "table, wide, json or yaml")

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
			default:
				return fmt.Errorf("unknown output format %q: use text, json or yaml", testOutput)
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
