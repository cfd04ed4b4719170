// Command gantry is the single binary of the Gantry platform: the server,
// the node agent, `gantry up` (both in one process) and the CLI.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/spf13/cobra"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/internal/logfile"
)

// exitError carries a specific exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	// containerd's shim starts the log driver for every container: go
	// straight to it, before flag parsing and anything else.
	if len(os.Args) > 1 && os.Args[1] == logDriverCommand {
		logfile.RunDriver()
	}
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	var got atomic.Value // the signal that ended the run
	go func() {
		sig, ok := <-sigs
		if !ok {
			return
		}
		got.Store(sig)
		cancel()
		// The first signal lets the command end cleanly (a server
		// stops its containers' clients, a follow prints its last
		// line); a second one ends the process at once, as under
		// Docker, whatever it was waiting for.
		if _, ok := <-sigs; ok {
			if s, ok := sig.(syscall.Signal); ok {
				os.Exit(128 + int(s))
			}
			os.Exit(1)
		}
	}()
	root := newRootCmd()
	// Standard input read through ctx: a command waiting for it (-f -,
	// login --token -) ends at Ctrl-C.
	root.SetIn(ctxReader{ctx: ctx, r: os.Stdin})
	err := root.ExecuteContext(ctx)
	signal.Stop(sigs)
	cancel()
	if sig, ok := got.Load().(syscall.Signal); ok && err != nil {
		// Ctrl-C (or SIGTERM) ended the command (logs -f, events -w,
		// rollout status, a read of standard input): not an error to
		// report but what came of it; the status is 128 + the signal,
		// as shells give.
		if !errors.Is(err, context.Canceled) && !errors.Is(err, errSilent) {
			printError(os.Stderr, err)
		}
		os.Exit(128 + int(sig))
	}
	if err != nil {
		code := 1
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
			err = ee.err
		}
		if err != nil && !errors.Is(err, errSilent) {
			printError(os.Stderr, err)
		}
		os.Exit(code)
	}
}

// errSilent ends a command with a failure status after it has already
// said why.
var errSilent = errors.New("")

// printError writes an error so that a user can act on it: the message,
// then one line per invalid field. Joined errors (several bad manifests)
// are printed one after the other.
func printError(w *os.File, err error) {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			printError(w, e)
		}
		return
	}
	var se *v1.StatusError
	if errors.As(err, &se) {
		fmt.Fprintf(w, "error: %s\n", se.Status.Message)
		for _, d := range se.Status.Details {
			fmt.Fprintf(w, "  %s\n", d)
		}
		return
	}
	var fe v1.FieldErrors
	if errors.As(err, &fe) {
		where := "invalid manifest"
		var me *v1.ManifestError
		if errors.As(err, &me) {
			where = strings.TrimSuffix(err.Error(), ": "+me.Err.Error()) + " is invalid"
		}
		fmt.Fprintf(w, "error: %s:\n", where)
		for _, d := range fe {
			fmt.Fprintf(w, "  %s\n", d)
		}
		return
	}
	fmt.Fprintf(w, "error: %v\n", err)
}

func newRootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "gantry",
		Short:         "Gantry: a self-hosted container platform in one binary",
		Long:          "Gantry runs, scales, heals and rolls out containers, with a built-in registry, DNS,\nload balancer, RBAC, secrets, audit and metrics. Start a node with `gantry up`.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	g.bind(root)
	root.AddCommand(
		newUpCmd(),
		newLogDriverCmd(),
		newDownCmd(),
		newServerCmd(),
		newAgentCmd(),
		newVersionCmd(g),
		newApplyCmd(g),
		newDiffCmd(g),
		newGetCmd(g),
		newDescribeCmd(g),
		newDeleteCmd(g),
		newCreateCmd(g),
		newRolloutCmd(g),
		newScaleCmd(g),
	)
	addExtraCommands(root, g)
	// Cobra adds its completion group at Execute; add it now so that it
	// refuses unknown words too.
	root.InitDefaultCompletionCmd()
	refuseUnknownSubcommands(root)
	return root
}

// refuseUnknownSubcommands makes a group of commands (gantry rollout,
// gantry secret, ...) fail on a word that names none of them, as the root
// does, instead of printing its help and exiting 0: a typo in a script
// must not pass for success. Without a word it prints its help.
func refuseUnknownSubcommands(c *cobra.Command) {
	for _, sub := range c.Commands() {
		refuseUnknownSubcommands(sub)
	}
	if !c.HasParent() || !c.HasSubCommands() || c.Runnable() {
		return
	}
	c.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return fmt.Errorf("unknown command %q for %q; see %q", args[0], cmd.CommandPath(), cmd.CommandPath()+" --help")
		}
		return nil
	}
	c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
}

// ctxReader reads r until ctx ends: a read blocked on a terminal or a
// pipe that sends nothing then returns ctx's error (the read itself goes
// on in the background, and the process ends soon after).
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	type result struct {
		n   int
		err error
	}
	buf := make([]byte, len(p))
	done := make(chan result, 1)
	go func() {
		n, err := c.r.Read(buf)
		done <- result{n, err}
	}()
	select {
	case r := <-done:
		return copy(p, buf[:r.n]), r.err
	case <-c.ctx.Done():
		return 0, c.ctx.Err()
	}
}
