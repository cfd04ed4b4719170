package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
)

func newDiffCmd(g *globals) *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:   "diff -f FILE|DIR|-",
		Short: "Show what apply would change",
		Long: `Show, as a unified diff, how each object in the manifests would change if they
were applied: the live object against the one the server would store (a server
dry run, so defaults, kept replica counts and namespace limits show as they would
be). Status and store bookkeeping (uid, revision, created) are left out; secret
values never leave the server, so a secret whose values alone would change is
named below the diff. The values of a secret you may not read (secrets/reveal)
are not compared at all: diff says so, and compares its keys and metadata only.

The diff is made by "diff -u -N", or by the command in GANTRY_EXTERNAL_DIFF,
given two directories. Exit status, as with kubectl diff: 0 when nothing would
change, 1 when something would, 2 or more on an error.`,
		Example: "  gantry diff -f web.yaml\n  GANTRY_EXTERNAL_DIFF='diff -u --color=always' gantry diff -f deploy/",
		// Usage errors are errors too (2), not "something would change".
		Args: func(cmd *cobra.Command, args []string) error {
			if err := manifestArgs(cmd, args); err != nil {
				return &exitError{code: 2, err: err}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			objs, err := readManifests(files, cmd.InOrStdin(), g.ns())
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			if err := g.namespaceClash(objs); err != nil {
				return &exitError{code: 2, err: err}
			}
			dr := &dryRunner{pending: dryRunPending{}}
			g.warn = dr.warnings(cmd.ErrOrStderr())
			c, err := g.client()
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			changed, err := runDiff(cmd, c, dr, inApplyOrder(objs))
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			if changed {
				return &exitError{code: 1, err: errSilent}
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVarP(&files, "filename", "f", nil, "manifest file, directory, or - for standard input (repeatable)")
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &exitError{code: 2, err: err} })
	return cmd
}

// runDiff writes each object as it is and as it would be into two
// directories and diffs them. It reports whether anything would change.
// An object that needs one the same manifests create first (what goes in
// a new namespace) is shown as written: the server cannot check it yet.
func runDiff(cmd *cobra.Command, c *client.Client, dr *dryRunner, objs []v1.Object) (bool, error) {
	ctx := cmd.Context()
	dir, err := os.MkdirTemp("", "gantry-diff-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(dir)
	live, merged := filepath.Join(dir, "LIVE"), filepath.Join(dir, "MERGED")
	for _, d := range []string{live, merged} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return false, err
		}
	}
	var hidden, uncompared []string
	for _, o := range objs {
		k, _ := v1.KindOf(o)
		m := o.GetMeta()
		ref := strings.ToLower(k.Kind) + "/" + m.Name
		file := strings.ToLower(k.Kind) + "." + m.Namespace + "." + m.Name + ".yaml"
		if m.Namespace == "" {
			file = strings.ToLower(k.Kind) + "." + m.Name + ".yaml"
		}
		was, err := c.Get(ctx, k.Kind, m.Namespace, m.Name)
		if err != nil && !errors.Is(err, v1.ErrNotFound) {
			return false, fmt.Errorf("%s: %w", ref, err)
		}
		var res client.DryRunResult
		if dep := dr.pending.blockedBy(o); dep != "" {
			res.Result = "created"
			fmt.Fprintf(cmd.ErrOrStderr(), "%s: shown as written, not checked by the server: it needs %s, which these manifests create first\n", ref, dep)
		} else {
			dr.current = o
			res, err = c.ApplyDryRunResult(ctx, o)
			dr.current = nil
			if err != nil {
				return false, fmt.Errorf("%s: %w", ref, err)
			}
			if res.Result == "created" {
				dr.pending.add(o)
			}
		}
		after, err := diffYAML(o)
		if err != nil {
			return false, err
		}
		var before []byte
		if was != nil {
			if before, err = diffYAML(was); err != nil {
				return false, err
			}
			if err := os.WriteFile(filepath.Join(live, file), before, 0o600); err != nil {
				return false, err
			}
		}
		if err := os.WriteFile(filepath.Join(merged, file), after, 0o600); err != nil {
			return false, err
		}
		if _, secret := o.(*v1.Secret); secret && res.Result == "configured" {
			switch {
			case res.SecretValuesNotCompared:
				// The server answers "configured" whatever the values
				// to a caller who may not read them: counting that as
				// a change reported every such secret as changed.
				uncompared = append(uncompared, ref)
			case bytes.Equal(before, after):
				// What changes is not shown: secret values.
				hidden = append(hidden, ref)
			}
		}
	}
	changed, err := externalDiff(ctx, cmd, live, merged)
	if err != nil {
		return false, err
	}
	for _, ref := range hidden {
		fmt.Fprintf(cmd.OutOrStdout(), "%s would be configured: its values change (secret values are not shown)\n", ref)
	}
	for _, ref := range uncompared {
		fmt.Fprintf(cmd.ErrOrStderr(), "%s: values not compared: you may not read them (secrets/reveal); only its keys and metadata were\n", ref)
	}
	return changed || len(hidden) > 0, nil
}

// diffYAML renders an object for a diff, without its status and what the
// server keeps for itself.
func diffYAML(o v1.Object) ([]byte, error) {
	b, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	delete(doc, "status")
	if m, ok := doc["metadata"].(map[string]any); ok {
		for _, k := range []string{"uid", "created", "revision"} {
			delete(m, k)
		}
	}
	var buf bytes.Buffer
	if err := printYAML(&buf, doc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// externalDiff runs diff -u -N (or GANTRY_EXTERNAL_DIFF) on the two
// directories, with its output on ours. diff's status 1 means the
// directories differ.
func externalDiff(ctx context.Context, cmd *cobra.Command, a, b string) (bool, error) {
	prog := []string{"diff", "-u", "-N"}
	if ext := strings.Fields(os.Getenv("GANTRY_EXTERNAL_DIFF")); len(ext) > 0 {
		prog = ext
	}
	x := exec.CommandContext(ctx, prog[0], append(prog[1:], a, b)...)
	x.Stdout, x.Stderr = cmd.OutOrStdout(), cmd.ErrOrStderr()
	err := x.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return false, nil
	case errors.As(err, &ee) && ee.ExitCode() == 1:
		return true, nil
	case errors.Is(err, exec.ErrNotFound):
		return false, fmt.Errorf("%s is not installed: install diffutils, or name another program in GANTRY_EXTERNAL_DIFF", prog[0])
	default:
		return false, fmt.Errorf("%s: %w", strings.Join(prog, " "), err)
	}
}
