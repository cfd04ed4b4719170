package main

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/internal/audit"
)

func newAuditCmd(g *globals) *cobra.Command {
	var since, until, user, verb, resource, output string
	var limit int
	var allNS bool
	filter := func() url.Values {
		q := url.Values{}
		for k, v := range map[string]string{"since": since, "until": until, "user": user, "verb": verb, "resource": resource} {
			if v != "" {
				q.Set(k, v)
			}
		}
		if !allNS && g.namespace != "" {
			q.Set("namespace", g.namespace)
		}
		if limit != 0 {
			q.Set("limit", strconv.Itoa(limit)) // a negative one is the server's to refuse
		}
		return q
	}
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Query the audit trail of every API and registry request",
		Example: `  gantry audit --since 1h
  gantry audit --user alice -n team --verb delete
  gantry audit verify
  gantry audit export --since 24h > trail.jsonl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch output {
			case "table", "json":
			default:
				// A script asking for yaml must not get the table.
				return fmt.Errorf("unknown output format %q: use table or json", output)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			var list struct{ Items []audit.Entry }
			if _, err := c.Do(cmd.Context(), "GET", "/api/v1/audit", filter(), nil, &list); err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), list.Items)
			}
			rows := [][]string{{"SEQ", "TIME", "USER", "SOURCE", "VERB", "RESOURCE", "NAMESPACE", "NAME", "STATUS"}}
			for _, e := range list.Items {
				res := e.Resource
				if e.Sub != "" {
					res += "/" + e.Sub
				}
				rows = append(rows, []string{strconv.FormatUint(e.Seq, 10), e.Time.Local().Format("2006-01-02 15:04:05"), e.User, e.Source,
					orDash(e.Verb), orDash(res), orDash(e.Namespace), orDash(e.Name), strconv.Itoa(e.Status)})
			}
			printRows(cmd.OutOrStdout(), rows)
			return nil
		},
	}
	// The filters of a query and of an export; verify checks the whole
	// chain and takes none.
	filters := func(c *cobra.Command) {
		f := c.Flags()
		f.StringVar(&since, "since", "", "records newer than this (e.g. 1h, or an RFC 3339 time)")
		f.StringVar(&until, "until", "", "records older than this")
		f.StringVar(&user, "user", "", "only this user's requests")
		f.StringVar(&verb, "verb", "", "only this verb (get, list, create, update, delete, pull, push, …)")
		f.StringVar(&resource, "resource", "", "only this resource (apps, secrets, images, …)")
		f.BoolVarP(&allNS, "all-namespaces", "A", false, "every namespace (the default unless -n is given)")
	}
	filters(cmd)
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many (newest) records (default 500)")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json")

	var dir string
	verify := &cobra.Command{
		Use:   "verify [--dir PATH]",
		Short: "Recompute the hash chain and name the first broken record",
		Long: `Recompute the hash of every audit record and check that each one chains to the
one before. With --dir, check the JSON-lines files in that directory offline
(e.g. <data-dir>/audit) instead of asking the server. Exits 1 if the chain is broken.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var res audit.VerifyResult
			if dir != "" {
				r, err := audit.VerifyDir(dir)
				if err != nil {
					return err
				}
				res = r
			} else {
				c, err := g.client()
				if err != nil {
					return err
				}
				if _, err := c.Do(cmd.Context(), "GET", "/api/v1/audit/verify", nil, nil, &res); err != nil {
					return err
				}
			}
			w := cmd.OutOrStdout()
			if res.Valid {
				fmt.Fprintf(w, "audit chain intact: %d records checked (seq %d to %d), last hash %s\n", res.Checked, res.FirstSeq, res.LastSeq, res.LastHash)
				return nil
			}
			where := ""
			if res.File != "" {
				where = fmt.Sprintf(" (%s line %d)", res.File, res.Line)
			}
			fmt.Fprintf(w, "audit chain BROKEN at record %d%s: %s\n", res.BrokenSeq, where, res.Reason)
			return &exitError{1, errSilent}
		},
	}
	verify.Flags().StringVar(&dir, "dir", "", "verify the audit files in this directory instead of the server's store")
	var afterSeq uint64
	export := &cobra.Command{
		Use:   "export",
		Short: "Write the audit records as JSON lines (for a SIEM)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			q := filter()
			if afterSeq > 0 {
				q.Set("afterSeq", strconv.FormatUint(afterSeq, 10))
			}
			body, err := c.Stream(cmd.Context(), "/api/v1/audit/export", q)
			if err != nil {
				return err
			}
			defer body.Close()
			_, err = io.Copy(cmd.OutOrStdout(), body)
			return err
		},
	}
	export.Flags().Uint64Var(&afterSeq, "after-seq", 0, "only records after this sequence number (to pull the trail in pieces)")
	filters(export)
	// -A and -n together would be -A, silently.
	bothNS := func(*cobra.Command, []string) error {
		if allNS && g.namespace != "" {
			return errors.New("give -n NAMESPACE or -A, not both")
		}
		return nil
	}
	cmd.PreRunE, export.PreRunE = bothNS, bothNS
	cmd.AddCommand(verify, export)
	return cmd
}
