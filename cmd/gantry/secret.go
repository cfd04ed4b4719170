package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
)

func newSecretCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "secret", Short: "Manage secrets: set, ls, get, rm, rotate-key"}
	var fromFiles []string
	set := &cobra.Command{
		Use:   "set NAME [KEY=VALUE…] [--from-file KEY=PATH…]",
		Short: "Create or replace a secret (values are encrypted at rest)",
		Example: `  gantry secret set db password=hunter2 user=app -n team
  gantry secret set tls --from-file tls.crt=./cert.pem --from-file tls.key=./key.pem`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if msg := v1.ValidateName(args[0], 63); msg != "" {
				return fmt.Errorf("secret name %q: it %s", args[0], msg)
			}
			sec := &v1.Secret{TypeMeta: v1.TypeMeta{Kind: "Secret"}, Metadata: v1.ObjectMeta{Name: args[0], Namespace: g.ns()}, Data: map[string][]byte{}}
			for n, kv := range args[1:] {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					// Not the argument itself: it may be the value.
					return fmt.Errorf("argument %d after the secret name is not KEY=VALUE (it is not shown: it may be a value): give values as KEY=VALUE", n+1)
				}
				if _, dup := sec.Data[k]; dup {
					return fmt.Errorf("key %q is given twice: give each key once", k)
				}
				sec.Data[k] = []byte(v)
			}
			for _, kp := range fromFiles {
				k, p, ok := strings.Cut(kp, "=")
				if !ok {
					p, k = kp, baseName(kp)
				}
				if _, dup := sec.Data[k]; dup {
					return fmt.Errorf("key %q is given twice (--from-file %s): give each key once", k, kp)
				}
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				sec.Data[k] = b
			}
			if len(sec.Data) == 0 {
				return errors.New("give at least one KEY=VALUE or --from-file")
			}
			if err := v1.Validate(sec).OrNil(); err != nil {
				return err
			}
			res, err := c.Apply(cmd.Context(), sec)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "secret/%s %s (%d keys)\n", args[0], res, len(sec.Keys))
			return nil
		},
	}
	set.Flags().StringArrayVar(&fromFiles, "from-file", nil, "KEY=PATH (or PATH, keyed by its file name) to read a value from a file")
	list := &listOutput{}
	ls := &cobra.Command{
		Use: "ls", Short: "List secrets and their keys (never values)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := list.check(); err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			objs, _, err := c.List(cmd.Context(), "Secret", g.ns(), client.ListOptions{})
			if err != nil {
				return err
			}
			return list.print(cmd, "Secret", objs, func() {
				rows := [][]string{{"NAME", "KEYS", "AGE"}}
				for _, o := range objs {
					s := o.(*v1.Secret)
					rows = append(rows, []string{s.Metadata.Name, strings.Join(s.Keys, ","), age(s.Metadata.Created)})
				}
				printRows(cmd.OutOrStdout(), rows)
			})
		},
	}
	list.bind(ls)
	get := &cobra.Command{
		Use:   "get NAME [KEY]",
		Short: "Reveal a secret's values (needs the secrets/reveal permission; the reveal is audited)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			out, err := c.RevealSecret(cmd.Context(), g.ns(), args[0])
			if err != nil {
				return err
			}
			if len(args) == 2 {
				v, ok := out[args[1]]
				if !ok {
					return fmt.Errorf("secret %s has no key %q", args[0], args[1])
				}
				cmd.OutOrStdout().Write(v) // as stored, byte for byte
				if isTerminal(cmd.OutOrStdout()) {
					fmt.Fprintln(cmd.OutOrStdout())
				}
				return nil
			}
			keys := make([]string, 0, len(out))
			for k := range out {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			nsFlag := ""
			if ns := g.ns(); ns != v1.DefaultNamespace {
				nsFlag = " -n " + ns
			}
			for _, k := range keys {
				v := out[k]
				// One line, with or without its newline, prints as
				// KEY=VALUE.
				line := bytes.TrimSuffix(bytes.TrimSuffix(v, []byte("\n")), []byte("\r"))
				switch {
				case utf8.Valid(v) && bytes.ContainsAny(line, "\r\n"):
					// Printed as is, its lines would read as keys of
					// their own.
					fmt.Fprintf(cmd.OutOrStdout(), "%s=(%d lines: gantry secret get %s %s%s)\n", k, bytes.Count(line, []byte("\n"))+1, args[0], k, nsFlag)
				case utf8.Valid(v):
					fmt.Fprintf(cmd.OutOrStdout(), "%s=%s\n", k, line)
				default:
					fmt.Fprintf(cmd.OutOrStdout(), "%s=(%d bytes, not text: gantry secret get %s %s%s > FILE)\n", k, len(v), args[0], k, nsFlag)
				}
			}
			return nil
		},
	}
	rm := &cobra.Command{
		Use: "rm NAME", Short: "Delete a secret", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if _, err := c.Delete(cmd.Context(), "Secret", g.ns(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "secret/%s deleted\n", args[0])
			return nil
		},
	}
	rotate := &cobra.Command{
		Use:   "rotate-key",
		Short: "Re-encrypt every secret under a new master key, without downtime (cluster admins)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			var res struct {
				KeyID    string
				Resealed int
				Retired  []string
				Took     string
			}
			// No request timeout: resealing every secret may take longer
			// than one, and hanging up would cancel it half-way.
			if _, err := c.DoLong(cmd.Context(), "POST", "/api/v1/secret-key/rotate", nil, nil, &res); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "master key rotated to %s: %d secrets re-encrypted in %s; retired keys %s no longer decrypt anything\n",
				res.KeyID, res.Resealed, res.Took, strings.Join(res.Retired, ", "))
			return nil
		},
	}
	cmd.AddCommand(set, ls, get, rm, rotate)
	return cmd
}

func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}
