package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
)

func newDescribeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "describe KIND NAME",
		Short:   "Show an object in detail, with its related objects and recent events",
		Example: "  gantry describe app hello\n  gantry describe instance hello-x7k2p",
		Args:    cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, name, err := oneRef(args)
			if err != nil {
				return err
			}
			if name == "" {
				return fmt.Errorf("name the %s to describe", strings.ToLower(k.Kind))
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			ns := g.ns()
			o, err := c.Get(ctx, k.Kind, ns, name)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			printYAML(w, o)
			switch o := o.(type) {
			case *v1.App:
				revs, _, err := client.List[*v1.Revision](ctx, c, ns, client.ListOptions{Selector: v1.LabelApp + "=" + name})
				fmt.Fprintln(w, "\nRevisions:")
				if err != nil {
					// Said, not shown as none: kubectl describe shows
					// what it could not read too.
					fmt.Fprintf(w, "  (cannot be read: %v)\n", err)
				} else {
					sort.Slice(revs, func(i, j int) bool { return revs[i].Spec.Number < revs[j].Spec.Number })
					rows := [][]string{{"  REVISION", "IMAGE", "DIGEST", "CAUSE"}}
					for _, r := range revs {
						rows = append(rows, []string{fmt.Sprintf("  %d", r.Spec.Number), r.Spec.Template.Image, orDash(shortDigest(r.Spec.ImageDigest)), orDash(r.Spec.ChangeCause)})
					}
					printRows(w, rows)
				}
				insts, _, err := client.List[*v1.Instance](ctx, c, ns, client.ListOptions{Selector: v1.LabelApp + "=" + name})
				fmt.Fprintln(w, "\nInstances:")
				objs := make([]v1.Object, len(insts))
				for i := range insts {
					objs[i] = insts[i]
				}
				switch {
				case err != nil:
					fmt.Fprintf(w, "  (cannot be read: %v)\n", err)
				case len(objs) == 0:
					fmt.Fprintln(w, "  none")
				default:
					printTable(&indent{w: w}, "Instance", objs, true, false, true)
				}
				describeEvents(w, c, cmd, ns, "App", name, v1.LabelApp+"="+name)
			default:
				evNS := ns
				if !k.Namespaced {
					// Events about cluster-scoped objects (a node's
					// NodeNotReady) are kept in the default namespace,
					// whatever -n says.
					evNS = v1.DefaultNamespace
				}
				describeEvents(w, c, cmd, evNS, o.GetType().Kind, name, "")
			}
			return nil
		},
	}
}

// indent writes to w with two spaces at the start of every line. A
// tabwriter flushes a line in several writes, so it keeps track of where
// lines start rather than indenting each write.
type indent struct {
	w   io.Writer
	mid bool // the last write did not end a line
}

func (i *indent) Write(b []byte) (int, error) {
	for _, l := range strings.SplitAfter(string(b), "\n") {
		if l == "" {
			continue
		}
		if !i.mid {
			l = "  " + l
		}
		if _, err := io.WriteString(i.w, l); err != nil {
			return 0, err
		}
		i.mid = !strings.HasSuffix(l, "\n")
	}
	return len(b), nil
}

func shortDigest(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

func describeEvents(w io.Writer, c *client.Client, cmd *cobra.Command, ns, kind, name, selector string) {
	evs, _, err := client.List[*v1.Event](cmd.Context(), c, ns, client.ListOptions{Selector: selector})
	if err != nil {
		fmt.Fprintf(w, "\nEvents:\n  (cannot be read: %v)\n", err)
		return
	}
	var objs []v1.Object
	for _, e := range evs {
		if selector != "" || (e.Object.Kind == kind && e.Object.Name == name) {
			objs = append(objs, e)
		}
	}
	fmt.Fprintln(w, "\nEvents:")
	if len(objs) == 0 {
		fmt.Fprintln(w, "  none")
		return
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].(*v1.Event).Time.Before(objs[j].(*v1.Event).Time) })
	if len(objs) > 20 {
		objs = objs[len(objs)-20:]
	}
	printTable(&indent{w: w}, "Event", objs, false, false, true)
}
