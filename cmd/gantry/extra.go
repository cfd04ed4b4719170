package main

import (
	"fmt"

	"github.com/spf13/cobra"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
)

// addExtraCommands adds the day-two commands.
func addExtraCommands(root *cobra.Command, g *globals) {
	root.AddCommand(newEventsCmd(g), newLogsCmd(g), newExecCmd(g),
		newLoginCmd(g), newWhoAmICmd(g), newUserCmd(g), newTokenCmd(g), newRoleCmd(g), newTopCmd(g), newAuditCmd(g), newSecretCmd(g),
		newAlertCmd(g), newNotifierCmd(g), newImageCmd(g), newRegistryCmd(g), newJoinTokenCmd(g))
}

func newEventsCmd(g *globals) *cobra.Command {
	var watch, all bool
	var output string
	cmd := &cobra.Command{
		Use:     "events",
		Short:   "Show what happened: scheduling, starts, failures, rollouts",
		Example: "  gantry events\n  gantry events -w -n team",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ns := g.listNamespace(all)
			k, _ := v1.LookupKind("Event")
			if watch {
				if err := checkWatchOutput(output); err != nil {
					return err
				}
				return watchObjects(cmd.Context(), cmd.OutOrStdout(), c, k, ns, "", "", output, all)
			}
			evs, _, err := c.List(cmd.Context(), "Event", ns, client.ListOptions{})
			if err != nil {
				return err
			}
			if len(evs) == 0 && output == "table" {
				fmt.Fprintln(cmd.ErrOrStderr(), "No events.")
				return nil
			}
			return printObjects(cmd.OutOrStdout(), "Event", output, evs, false, all)
		},
	}
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "keep printing new events")
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "events of every namespace")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table, wide, json or yaml")
	return cmd
}
