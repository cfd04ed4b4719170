package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"

	"github.com/spf13/cobra"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
)

// metricsBody is what top reads of a …/metrics answer.
type metricsBody struct {
	CPULimit float64        `json:"cpuLimit"`
	Points   []metricsPoint `json:"points"`
}

type metricsPoint struct {
	CPU float64 `json:"cpu"`
	// CPUUnknown: no CPU rate is known yet (a first sample after a
	// start), and CPU is 0 without meaning idle.
	CPUUnknown  bool  `json:"cpuUnknown"`
	Memory      int64 `json:"memory"`
	MemoryLimit int64 `json:"memoryLimit"`
	Restarts    int   `json:"restarts"`
	Instances   int   `json:"instances"`
}

func fetchMetrics(ctx context.Context, c *client.Client, kind, ns, name string) (*metricsBody, error) {
	k, _ := v1.LookupKind(kind)
	p, err := client.ObjectPath(k, ns, name)
	if err != nil {
		return nil, err
	}
	var m metricsBody
	_, err = c.Do(ctx, "GET", p+"/metrics", url.Values{"since": {"1m"}}, nil, &m)
	return &m, err
}

func pct(v, of float64) string {
	if of <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", v/of*100)
}

func cores(c float64) string { return fmt.Sprintf("%dm", int64(c*1000+0.5)) }

// cpuCells are a point's CPU and CPU% columns, share giving the latter;
// "-" for both when the CPU is not known, which is not idle.
func cpuCells(p metricsPoint, share func(float64) string) (string, string) {
	if p.CPUUnknown {
		return "-", "-"
	}
	return cores(p.CPU), share(p.CPU)
}

// cpuShare is CPU use as a share of the CPU limit, or of the request
// when the template sets no limit (instances may then use more than
// they asked for), saying which.
func cpuShare(use, of float64, r v1.Resources) string {
	if of <= 0 {
		return "-"
	}
	if r.CPULimit() == 0 {
		return pct(use, of) + " of request"
	}
	return pct(use, of) + " of limit"
}

// appTopRow is an App's line of gantry top apps, from its metrics (nil
// when they could not be fetched). CPU, memory and their limits are the
// App's totals over the instances its newest point counts (the server
// counts every instance still reporting, whichever node sampled last),
// and so is the CPU request.
func appTopRow(a *v1.App, m *metricsBody) []string {
	perInstance := float64(a.Spec.Resources.CPU) / 1000
	if m == nil || len(m.Points) == 0 {
		return []string{a.Metadata.Namespace, a.Metadata.Name, fmt.Sprint(a.Status.Replicas), "-", "-", cores(perInstance * float64(a.Status.Replicas)), "-", "-"}
	}
	p := m.Points[len(m.Points)-1]
	cpu, share := cpuCells(p, func(c float64) string { return cpuShare(c, m.CPULimit, a.Spec.Resources) })
	return []string{a.Metadata.Namespace, a.Metadata.Name, fmt.Sprint(p.Instances), cpu, share,
		cores(perInstance * float64(p.Instances)), v1.Bytes(p.Memory).String(), pct(float64(p.Memory), float64(p.MemoryLimit))}
}

func newTopCmd(g *globals) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "top apps|instances|nodes",
		Short: "Show current CPU and memory use against requests and limits",
		Example: `  gantry top apps
  gantry top instances -n team
  gantry top nodes`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return errors.New("name what to show: gantry top apps, top instances or top nodes")
			}
			return nil
		},
		ValidArgs: []string{"apps", "instances", "nodes"},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			ns := g.listNamespace(all)
			w := cmd.OutOrStdout()
			k, ok := v1.LookupKind(args[0])
			if !ok {
				return fmt.Errorf("top shows apps, instances or nodes, not %q", args[0])
			}
			// A refusal is the answer for every row: say it, rather
			// than a table of "-" that reads as no sample yet. Other
			// errors (a node away) leave their row empty, with a note.
			var missed error
			metricsOf := func(kind, ns, name string) (*metricsBody, error) {
				m, err := fetchMetrics(ctx, c, kind, ns, name)
				if errors.Is(err, v1.ErrForbidden) || errors.Is(err, v1.ErrUnauthorized) {
					return nil, err
				}
				if err != nil && !errors.Is(err, v1.ErrNotFound) { // not one deleted since the list
					missed = err
				}
				return m, nil
			}
			switch k.Kind {
			case "App":
				apps, _, err := client.List[*v1.App](ctx, c, ns, client.ListOptions{})
				if err != nil {
					return err
				}
				rows := [][]string{{"NAMESPACE", "APP", "INSTANCES", "CPU", "CPU%", "CPU REQUEST", "MEMORY", "MEMORY/LIMIT"}}
				for _, a := range apps {
					m, err := metricsOf("App", a.Metadata.Namespace, a.Metadata.Name)
					if err != nil {
						return err
					}
					rows = append(rows, appTopRow(a, m))
				}
				printRows(w, rows)
			case "Instance":
				insts, _, err := client.List[*v1.Instance](ctx, c, ns, client.ListOptions{})
				if err != nil {
					return err
				}
				sort.Slice(insts, func(i, j int) bool { return insts[i].Metadata.Key() < insts[j].Metadata.Key() })
				rows := [][]string{{"NAMESPACE", "INSTANCE", "APP", "CPU", "CPU%", "MEMORY", "MEMORY/LIMIT", "RESTARTS", "NODE"}}
				for _, i := range insts {
					m, err := metricsOf("Instance", i.Metadata.Namespace, i.Metadata.Name)
					if err != nil {
						return err
					}
					if m == nil || len(m.Points) == 0 {
						rows = append(rows, []string{i.Metadata.Namespace, i.Metadata.Name, i.Spec.App, "-", "-", "-", "-", fmt.Sprint(i.Status.Restarts), orDash(i.Spec.Node)})
						continue
					}
					p := m.Points[len(m.Points)-1]
					cpu, share := cpuCells(p, func(c float64) string { return cpuShare(c, m.CPULimit, i.Spec.Template.Resources) })
					rows = append(rows, []string{i.Metadata.Namespace, i.Metadata.Name, i.Spec.App, cpu, share,
						v1.Bytes(p.Memory).String(), pct(float64(p.Memory), float64(p.MemoryLimit)), fmt.Sprint(i.Status.Restarts), orDash(i.Spec.Node)})
				}
				printRows(w, rows)
			case "Node":
				nodes, _, err := client.List[*v1.Node](ctx, c, "", client.ListOptions{})
				if err != nil {
					return err
				}
				rows := [][]string{{"NODE", "CPU", "CPU%", "MEMORY", "MEMORY%", "INSTANCES", "READY"}}
				for _, n := range nodes {
					m, err := metricsOf("Node", "", n.Metadata.Name)
					if err != nil {
						return err
					}
					if m == nil || len(m.Points) == 0 {
						rows = append(rows, []string{n.Metadata.Name, "-", "-", "-", "-", "-", fmt.Sprint(n.Status.Ready)})
						continue
					}
					p := m.Points[len(m.Points)-1]
					cpu, share := cpuCells(p, func(c float64) string { return pct(c, m.CPULimit) })
					rows = append(rows, []string{n.Metadata.Name, cpu, share, v1.Bytes(p.Memory).String(),
						pct(float64(p.Memory), float64(p.MemoryLimit)), fmt.Sprint(p.Instances), fmt.Sprint(n.Status.Ready)})
				}
				printRows(w, rows)
			default:
				return fmt.Errorf("top shows apps, instances or nodes, not %q", args[0])
			}
			if missed != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "note: some metrics could not be read (shown as -): %v\n", missed)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "every namespace")
	return cmd
}
