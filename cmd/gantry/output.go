package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"sigs.k8s.io/yaml"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// isTerminal reports whether w is an interactive terminal (for colour and
// progress bars).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd())) && os.Getenv("NO_COLOR") == ""
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printYAML(w io.Writer, v any) error {
	b, err := yaml.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// age formats the time since t like kubectl: 45s, 12m, 3h, 5d.
func age(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Since(t)
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// column is one column of a table: a header and how to read it.
type column struct {
	header string
	wide   bool // only in -o wide
	value  func(o v1.Object) string
}

func tableColumns(kind string) []column {
	name := column{header: "NAME", value: func(o v1.Object) string { return o.GetMeta().Name }}
	ageCol := column{header: "AGE", value: func(o v1.Object) string { return age(o.GetMeta().Created) }}
	switch kind {
	case "App":
		return []column{name,
			{header: "READY", value: func(o v1.Object) string {
				a := o.(*v1.App)
				return fmt.Sprintf("%d/%d", a.Status.ReadyReplicas, a.DesiredReplicas())
			}},
			{header: "AVAILABLE", value: func(o v1.Object) string { return fmt.Sprint(o.(*v1.App).Status.AvailableReplicas) }},
			{header: "REVISION", value: func(o v1.Object) string { return fmt.Sprint(o.(*v1.App).Status.Revision) }},
			{header: "PHASE", value: func(o v1.Object) string { return orDash(o.(*v1.App).Status.Phase) }},
			{header: "IMAGE", value: func(o v1.Object) string { return o.(*v1.App).Spec.Image }},
			ageCol,
			{header: "NODE-PORTS", wide: true, value: func(o v1.Object) string {
				var ports []string
				for _, p := range o.(*v1.App).Status.NodePorts {
					ports = append(ports, fmt.Sprintf("%s:%d", p.Port, p.NodePort))
				}
				return orDash(strings.Join(ports, ","))
			}},
			{header: "MESSAGE", wide: true, value: func(o v1.Object) string { return o.(*v1.App).Status.Message }},
		}
	case "Instance":
		return []column{name,
			{header: "APP", value: func(o v1.Object) string { return o.(*v1.Instance).Spec.App }},
			{header: "REV", value: func(o v1.Object) string { return fmt.Sprint(o.(*v1.Instance).Spec.Revision) }},
			{header: "PHASE", value: func(o v1.Object) string {
				i := o.(*v1.Instance)
				if i.Metadata.Deleting != nil {
					return v1.PhaseTerminating
				}
				return orDash(i.Status.Phase)
			}},
			{header: "READY", value: func(o v1.Object) string { return fmt.Sprint(o.(*v1.Instance).Status.Ready) }},
			{header: "RESTARTS", value: func(o v1.Object) string { return fmt.Sprint(o.(*v1.Instance).Status.Restarts) }},
			{header: "IP", value: func(o v1.Object) string { return orDash(o.(*v1.Instance).Status.IP) }},
			{header: "NODE", value: func(o v1.Object) string { return orDash(o.(*v1.Instance).Spec.Node) }},
			ageCol,
			{header: "MESSAGE", wide: true, value: func(o v1.Object) string { return o.(*v1.Instance).Status.Message }},
		}
	case "Node":
		return []column{name,
			{header: "READY", value: func(o v1.Object) string {
				n := o.(*v1.Node)
				s := fmt.Sprint(n.Status.Ready)
				if n.Spec.Unschedulable {
					s += ",cordoned"
				}
				return s
			}},
			{header: "CPU", value: func(o v1.Object) string { return o.(*v1.Node).Status.Allocatable.CPU.String() }},
			{header: "MEMORY", value: func(o v1.Object) string { return o.(*v1.Node).Status.Allocatable.Memory.String() }},
			{header: "SUBNET", value: func(o v1.Object) string { return orDash(o.(*v1.Node).Spec.Subnet) }},
			ageCol,
			{header: "ADDRESS", wide: true, value: func(o v1.Object) string { return o.(*v1.Node).Status.Address }},
			{header: "RUNTIME", wide: true, value: func(o v1.Object) string { return o.(*v1.Node).Status.Runtime }},
		}
	case "Revision":
		return []column{name,
			{header: "APP", value: func(o v1.Object) string { return o.(*v1.Revision).Spec.App }},
			{header: "NUMBER", value: func(o v1.Object) string { return fmt.Sprint(o.(*v1.Revision).Spec.Number) }},
			{header: "IMAGE", value: func(o v1.Object) string { return o.(*v1.Revision).Spec.Template.Image }},
			ageCol,
			{header: "DIGEST", wide: true, value: func(o v1.Object) string { return orDash(o.(*v1.Revision).Spec.ImageDigest) }},
			{header: "CAUSE", wide: true, value: func(o v1.Object) string { return o.(*v1.Revision).Spec.ChangeCause }},
		}
	case "Event":
		return []column{
			{header: "LAST SEEN", value: func(o v1.Object) string { return age(o.(*v1.Event).Time) }},
			{header: "TYPE", value: func(o v1.Object) string { return o.(*v1.Event).Type }},
			{header: "REASON", value: func(o v1.Object) string { return o.(*v1.Event).Reason }},
			{header: "OBJECT", value: func(o v1.Object) string {
				e := o.(*v1.Event)
				return strings.ToLower(e.Object.Kind) + "/" + e.Object.Name
			}},
			{header: "MESSAGE", value: func(o v1.Object) string { return o.(*v1.Event).Message }},
		}
	case "Token":
		return []column{name,
			{header: "USER", value: func(o v1.Object) string { return o.(*v1.Token).Spec.User }},
			{header: "EXPIRES", value: func(o v1.Object) string {
				t := o.(*v1.Token)
				if t.Spec.Expires == nil {
					return "never"
				}
				return t.Spec.Expires.Format(time.RFC3339)
			}},
			{header: "REVOKED", value: func(o v1.Object) string { return fmt.Sprint(o.(*v1.Token).Spec.Revoked) }},
			{header: "LAST USED", value: func(o v1.Object) string {
				t := o.(*v1.Token)
				if t.Status.LastUsed == nil {
					return "never"
				}
				return age(*t.Status.LastUsed) + " ago"
			}},
			{header: "DESCRIPTION", value: func(o v1.Object) string { return o.(*v1.Token).Spec.Description }},
		}
	case "RoleBinding":
		return []column{name,
			{header: "USER", value: func(o v1.Object) string { return o.(*v1.RoleBinding).Spec.User }},
			{header: "ROLE", value: func(o v1.Object) string { return o.(*v1.RoleBinding).Spec.Role }},
			{header: "NAMESPACE", value: func(o v1.Object) string { return o.(*v1.RoleBinding).Spec.Namespace }},
			ageCol,
		}
	}
	if c, ok := extraColumns[kind]; ok {
		return append([]column{name}, append(c, ageCol)...)
	}
	return []column{name, ageCol}
}

// extraColumns lets kinds added in other files declare their columns.
var extraColumns = map[string][]column{}

// printTable writes objects as an aligned table.
func printTable(w io.Writer, kind string, objs []v1.Object, wide, withNamespace, headers bool) {
	cols := tableColumns(kind)
	if kind == "Event" {
		sort.SliceStable(objs, func(i, j int) bool { return objs[i].(*v1.Event).Time.Before(objs[j].(*v1.Event).Time) })
	}
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	var hs []string
	if withNamespace {
		hs = append(hs, "NAMESPACE")
	}
	for _, c := range cols {
		if c.wide && !wide {
			continue
		}
		hs = append(hs, c.header)
	}
	if headers {
		fmt.Fprintln(tw, strings.Join(hs, "\t"))
	}
	for _, o := range objs {
		var vs []string
		if withNamespace {
			vs = append(vs, o.GetMeta().Namespace)
		}
		for _, c := range cols {
			if c.wide && !wide {
				continue
			}
			vs = append(vs, strings.ReplaceAll(c.value(o), "\n", " "))
		}
		fmt.Fprintln(tw, strings.Join(vs, "\t"))
	}
	tw.Flush()
}

// printObjects writes objects in the requested format.
func printObjects(w io.Writer, kind, format string, objs []v1.Object, single, withNamespace bool) error {
	switch format {
	case "", "table", "wide":
		if len(objs) == 0 {
			fmt.Fprintln(os.Stderr, "No resources found.")
			return nil
		}
		printTable(w, kind, objs, format == "wide", withNamespace, true)
		return nil
	case "json":
		if single && len(objs) == 1 {
			return printJSON(w, objs[0])
		}
		return printJSON(w, map[string]any{"kind": kind + "List", "items": objs})
	case "yaml":
		if single && len(objs) == 1 {
			return printYAML(w, objs[0])
		}
		return printYAML(w, map[string]any{"kind": kind + "List", "items": objs})
	case "name":
		for _, o := range objs {
			fmt.Fprintf(w, "%s/%s\n", strings.ToLower(kind), o.GetMeta().Name)
		}
		return nil
	}
	return fmt.Errorf("unknown output format %q: use table, wide, json, yaml or name", format)
}

// listOutput gives an ls command -o: its own table, or the objects as
// json, yaml or name (as get prints them), for scripts.
type listOutput struct{ format string }

// bind adds the -o flag to cmd.
func (o *listOutput) bind(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&o.format, "output", "o", "table", "table, json, yaml or name")
}

// check refuses an unknown format before anything is asked of the server.
func (o *listOutput) check() error {
	switch o.format {
	case "table", "json", "yaml", "name":
		return nil
	}
	return fmt.Errorf("-o %s: give table, json, yaml or name", o.format)
}

// print writes objs in the chosen format to cmd's output; table prints
// the command's own table.
func (o *listOutput) print(cmd *cobra.Command, kind string, objs []v1.Object, table func()) error {
	w := cmd.OutOrStdout()
	if o.format == "table" {
		if len(objs) == 0 {
			fmt.Fprintln(cmd.ErrOrStderr(), "No resources found.")
			return nil
		}
		table()
		return nil
	}
	return printObjects(w, kind, o.format, objs, false, false)
}
