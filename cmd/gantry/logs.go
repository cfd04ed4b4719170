package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
	"github.com/gantry-dev/gantry/internal/stream"
)

// logLine is one line as agents stream it.
type logLine struct {
	Time     time.Time `json:"time"`
	Stream   string    `json:"stream"`
	Line     string    `json:"line"`
	Instance string    `json:"instance,omitempty"`
}

var prefixColors = []string{"\x1b[36m", "\x1b[33m", "\x1b[32m", "\x1b[35m", "\x1b[34m", "\x1b[31m"}

func newLogsCmd(g *globals) *cobra.Command {
	var follow, timestamps bool
	var tail int
	var since time.Duration
	var output string
	cmd := &cobra.Command{
		Use:   "logs app/NAME | INSTANCE",
		Short: "Print the logs of an instance, or of every instance of an app",
		Example: `  gantry logs app/hello -f
  gantry logs hello-x7k2p --tail 20 --timestamps
  gantry logs app/hello --since 10m -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case tail < -1:
				return fmt.Errorf("--tail %d: give a number of lines (0 for none), or -1 for all", tail)
			case since < 0:
				return fmt.Errorf("--since %s: give a positive duration, such as 10m", since)
			case output != "text" && output != "json":
				return fmt.Errorf("-o %s: give text or json", output)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			ns := g.ns()
			var instances []string
			var appName string // of app/NAME
			listed := false    // the instances came from a list: a 404 for one means it was deleted since
			if kind, name, ok := strings.Cut(args[0], "/"); ok {
				k, found := v1.LookupKind(kind)
				switch {
				case found && k.Kind == "App":
					insts, _, err := client.List[*v1.Instance](ctx, c, ns, client.ListOptions{Selector: v1.LabelApp + "=" + name})
					if err != nil {
						return err
					}
					if len(insts) == 0 {
						if _, err := client.Get[*v1.App](ctx, c, ns, name); err != nil {
							return err
						}
						if !follow {
							return fmt.Errorf("app/%s has no instances", name)
						}
						// Just applied, or scaled to 0: follow the
						// instances as they are made.
						fmt.Fprintf(cmd.ErrOrStderr(), "app/%s has no instances yet; waiting for them\n", name)
					}
					for _, i := range insts {
						instances = append(instances, i.Metadata.Name)
					}
					listed, appName = true, name
				case found && k.Kind == "Instance":
					instances = []string{name}
				default:
					return fmt.Errorf("%q: give app/NAME or an instance name", args[0])
				}
			} else {
				instances = []string{args[0]}
			}
			sort.Strings(instances)
			q := url.Values{}
			if follow {
				q.Set("follow", "true")
			}
			switch {
			case tail == 0:
				// No line printed so far; with -f, only what comes from
				// now on. (The API's tail=0 means no limit.)
				if !follow {
					// Nothing to print, but a name that is wrong is
					// still an error.
					for _, inst := range instances {
						if _, err := c.Get(ctx, "Instance", ns, inst); err != nil {
							return err
						}
					}
					return nil
				}
				// From now on the node's clock, not this machine's,
				// which may be off.
				q.Set("sinceSeconds", "0")
			case tail > 0:
				q.Set("tail", strconv.Itoa(tail))
			}
			if since > 0 && tail != 0 {
				q.Set("sinceSeconds", strconv.FormatInt(int64(math.Ceil(since.Seconds())), 10))
			}
			// An App's follow takes in instances made later: its lines
			// name their instance from the start.
			p := &logPrinter{w: cmd.OutOrStdout(), json: output == "json", timestamps: timestamps,
				prefix: len(instances) > 1 || listed && follow, color: isTerminal(cmd.OutOrStdout()), names: slices.Clone(instances)}
			if !follow {
				var all []logLine
				read := 0
				for _, inst := range instances {
					lines, err := readLogs(ctx, c, ns, inst, q)
					if listed && (errors.Is(err, v1.ErrNotFound) || errors.Is(err, v1.ErrUnavailable)) {
						// Deleted since the list, or not placed (or its
						// node away): the others' logs still print, as the
						// server's merged logs leave it out.
						fmt.Fprintf(cmd.ErrOrStderr(), "%v (left out)\n", err)
						continue
					}
					if err != nil {
						return err
					}
					read++
					all = append(all, lines...)
				}
				sort.SliceStable(all, func(i, j int) bool { return all[i].Time.Before(all[j].Time) })
				for _, l := range all {
					p.print(l)
				}
				if read == 0 && len(instances) > 0 {
					// None could be read: not a success, as asking for
					// one of them by name is not.
					return &exitError{1, fmt.Errorf("no instance of app/%s could be read (each is left out above)", appName)}
				}
				return nil
			}
			var wg sync.WaitGroup
			var mu sync.Mutex
			followed := map[string]bool{}
			var errs []error
			// A follow that fails for good (forbidden, a bad request)
			// ends them all and the command with its error, not a
			// silent wait.
			fctx, failed := context.WithCancel(ctx)
			defer failed()
			start := func(inst string, q url.Values, existed bool) {
				mu.Lock()
				defer mu.Unlock()
				if followed[inst] {
					return
				}
				followed[inst] = true
				wg.Add(1)
				go func() {
					defer wg.Done()
					note := func(msg string) { fmt.Fprintln(cmd.ErrOrStderr(), msg) }
					if err := followLogs(fctx, c, ns, inst, q, existed, p.print, note); err != nil && !errors.Is(err, context.Canceled) {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
						failed()
					}
				}()
			}
			for _, inst := range instances {
				start(inst, q, listed)
			}
			if listed {
				// The App's instances change (a rollout, a replacement,
				// a scale-up): follow each new one from its first line,
				// until the App is deleted. Each follow ends when its
				// instance is deleted.
				later := url.Values{"follow": {"true"}}
				watchApp(fctx, c, ns, appName, func(inst string) { start(inst, later, true) })
			}
			wg.Wait()
			if len(errs) > 0 {
				return errs[0]
			}
			// Interrupted (Ctrl-C) is not success: main exits 130.
			return ctx.Err()
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&follow, "follow", "f", false, "keep printing new lines")
	f.IntVar(&tail, "tail", -1, "print only the last N lines of each instance (0: none, only new ones with -f; -1: all)")
	f.DurationVar(&since, "since", 0, "only lines newer than this (e.g. 10m)")
	f.BoolVar(&timestamps, "timestamps", false, "prefix each line with its time")
	f.StringVarP(&output, "output", "o", "text", "text or json")
	return cmd
}

type logPrinter struct {
	mu         sync.Mutex
	w          io.Writer
	json       bool
	timestamps bool
	prefix     bool
	color      bool
	names      []string // the instances, in the order of their colors
}

func (p *logPrinter) print(l logLine) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json {
		json.NewEncoder(p.w).Encode(l)
		return
	}
	var b strings.Builder
	if p.prefix {
		if p.color {
			b.WriteString(prefixColors[p.index(l.Instance)%len(prefixColors)])
		}
		b.WriteString("[" + l.Instance + "] ")
		if p.color {
			b.WriteString("\x1b[0m")
		}
	}
	if p.timestamps {
		b.WriteString(l.Time.Format(time.RFC3339Nano) + " ")
	}
	b.WriteString(l.Line)
	fmt.Fprintln(p.w, b.String())
}

// index is the number of an instance among those printed, for its
// color; the caller holds mu.
func (p *logPrinter) index(inst string) int {
	if i := slices.Index(p.names, inst); i >= 0 {
		return i
	}
	p.names = append(p.names, inst)
	return len(p.names) - 1
}

// watchApp lists an App's instances every instanceCheck and calls found
// with each one's name (those seen before included), until ctx ends or
// the App is deleted.
func watchApp(ctx context.Context, c *client.Client, ns, app string, found func(inst string)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(instanceCheck):
		}
		insts, _, err := client.List[*v1.Instance](ctx, c, ns, client.ListOptions{Selector: v1.LabelApp + "=" + app})
		if err == nil {
			for _, i := range insts {
				found(i.Metadata.Name)
			}
		}
		if _, err := client.Get[*v1.App](ctx, c, ns, app); errors.Is(err, v1.ErrNotFound) {
			return
		}
	}
}

// logsPath is the path of an instance's log. The names are checked: an
// instance called ".." would make it the log of another path.
func logsPath(ns, inst string) (string, error) {
	k, _ := v1.LookupKind("Instance")
	p, err := client.ObjectPath(k, ns, inst)
	if err != nil {
		return "", err
	}
	return p + "/logs", nil
}

func readLogs(ctx context.Context, c *client.Client, ns, inst string, q url.Values) ([]logLine, error) {
	var out []logLine
	err := streamLogs(ctx, c, ns, inst, q, func(l logLine) { out = append(out, l) })
	return out, err
}

func streamLogs(ctx context.Context, c *client.Client, ns, inst string, q url.Values, fn func(logLine)) error {
	path, err := logsPath(ns, inst)
	if err != nil {
		return err
	}
	body, err := c.Stream(ctx, path, q)
	if err != nil {
		return fmt.Errorf("logs of %s: %w", inst, err)
	}
	return scanLogs(ctx, body, inst, fn)
}

// scanLogs calls fn with each line of an open log stream and closes it.
func scanLogs(ctx context.Context, body io.ReadCloser, inst string, fn func(logLine)) error {
	defer body.Close()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			continue
		}
		l.Instance = inst
		fn(l)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return sc.Err()
}

// followRetry is how long followLogs waits before it reconnects.
const followRetry = 500 * time.Millisecond

// followLogs follows an instance's log and reconnects when the stream
// breaks or the server or node is unavailable (restarting), continuing
// after the last line printed. It ends without error when the instance is
// deleted while followed, and once it has printed the last lines of an
// instance that has finished (Succeeded or Failed for good), as docker
// logs -f and kubectl logs -f end with their container; existed says the
// caller has seen the instance (it listed it), so that even a first 404
// means that. Other errors (not found, forbidden, a bad request) are
// returned.
//
// note, when not nil, hears once why the follow waits (the instance not
// placed yet, its node away), so that a follow that prints nothing says
// why.
func followLogs(ctx context.Context, c *client.Client, ns, inst string, q url.Values, existed bool, fn func(logLine), note func(string)) error {
	path, err := logsPath(ns, inst)
	if err != nil {
		return err
	}
	// The log outlives its instance (the agent keeps it for a day), so
	// its stream does not end when the instance is deleted or finishes:
	// look at the instance now and then, and end the follow when it is
	// gone, or read what is left and end it when it has finished.
	outer := ctx
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	gone, finished := make(chan struct{}), make(chan struct{})
	// Read here, not in the goroutine, which nothing waits for.
	every := instanceCheck
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			i, err := client.Get[*v1.Instance](ctx, c, ns, inst)
			switch {
			case err == nil && i.Status.Finished():
				close(finished)
				stop()
				return
			case errors.Is(err, v1.ErrNotFound):
				close(gone)
				stop()
				return
			case errors.Is(err, v1.ErrForbidden) || errors.Is(err, v1.ErrUnauthorized):
				// A role that may read logs but not instances: the
				// follow ends on a reconnect's 404 instead, as before.
				return
			}
		}
	}()
	closed := func(ch chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	ended := func() (bool, error) {
		if closed(gone) {
			return true, nil
		}
		if outer.Err() != nil {
			return true, outer.Err()
		}
		return false, nil
	}
	var printed printedLines
	var first time.Time
	// fetch asks for the lines after those printed, following them or
	// not, and prints them.
	fetch := func(ctx context.Context, follow bool) error {
		qq := url.Values{}
		maps.Copy(qq, q)
		if !follow {
			qq.Del("follow")
		}
		if first.IsZero() {
			first = time.Now()
		} else {
			// Asked again before a line came: lines written since the
			// first ask are still wanted.
			v1.WidenSinceSeconds(qq, time.Since(first))
		}
		// After a break, ask again from the time of the last line
		// printed, that time included: lines not yet printed may share
		// it. Of the lines at that time, skip as many of each as were
		// printed.
		var since time.Time
		var skip map[streamLine]int
		if printed.any {
			since, skip = printed.last, maps.Clone(printed.atTime)
			qq.Del("tail")
			qq.Del("sinceSeconds")
			qq.Set("since", since.Format(time.RFC3339Nano))
		}
		body, err := c.Stream(ctx, path, qq)
		if err != nil {
			return err
		}
		existed = true
		// A stream that breaks is reconnected as one that ends.
		_ = scanLogs(ctx, body, inst, func(l logLine) {
			if skip != nil && !l.Time.After(since) {
				if l.Time.Before(since) {
					return // printed before the break, or older than asked for
				}
				if k := (streamLine{l.Stream, l.Line}); skip[k] > 0 {
					skip[k]--
					return
				}
			}
			printed.add(l)
			fn(l)
		})
		return nil
	}
	for {
		err := fetch(ctx, true)
		if done, end := ended(); done {
			return end
		}
		if closed(finished) {
			// Its last lines, once: the follow was cut short to stop
			// waiting for more.
			if err := fetch(outer, false); err != nil && !errors.Is(err, v1.ErrNotFound) && outer.Err() == nil {
				return fmt.Errorf("logs of %s: %w", inst, err)
			}
			return outer.Err()
		}
		switch {
		case err == nil:
			// The stream ended or broke (the server or agent restarting):
			// reconnect.
		case errors.Is(err, v1.ErrNotFound) && existed:
			return nil // the instance is gone
		case client.Temporary(err):
			// The server or the node cannot be reached, a proxy in
			// front of the server says so (502, 504, 429), or the
			// instance is not on a node yet: try again.
			if note != nil {
				note(fmt.Sprintf("waiting for the logs of %s: %v", inst, err))
				note = nil
			}
		default:
			return fmt.Errorf("logs of %s: %w", inst, err)
		}
		select {
		case <-ctx.Done():
			if closed(finished) {
				continue // read its last lines
			}
			_, err := ended()
			return err
		case <-time.After(followRetry):
		}
	}
}

// instanceCheck is how often a follow looks whether its instance is gone.
var instanceCheck = 2 * time.Second

// streamLine is a log line without its time.
type streamLine struct{ stream, line string }

// printedLines remembers what a follower needs to resume without printing
// a line twice: the latest time printed and how often each line was
// printed with that time (a program may print the same line twice within
// the clock's resolution).
type printedLines struct {
	any    bool
	last   time.Time
	atTime map[streamLine]int
}

func (p *printedLines) add(l logLine) {
	switch {
	case !p.any || l.Time.After(p.last):
		p.any, p.last, p.atTime = true, l.Time, map[streamLine]int{}
	case l.Time.Before(p.last):
		return // an older line (a log written out of order) does not move the boundary
	}
	p.atTime[streamLine{l.Stream, l.Line}]++
}

func newExecCmd(g *globals) *cobra.Command {
	var interactive, tty bool
	cmd := &cobra.Command{
		Use:   "exec INSTANCE -- CMD [ARGS…]",
		Short: "Run a command in an instance's container",
		Example: `  gantry exec hello-x7k2p -- cat /etc/resolv.conf
  gantry exec -it hello-x7k2p -- sh`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 {
				return errors.New("give an instance and, after --, the command to run: gantry exec INSTANCE -- CMD [ARGS…]")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			inst := args[0]
			if kind, name, ok := strings.Cut(inst, "/"); ok {
				if k, found := v1.LookupKind(kind); !found || k.Kind != "Instance" {
					return fmt.Errorf("%q: exec runs in one instance: give its name (gantry get instances -l %s=NAME lists an app's)", inst, v1.LabelApp)
				}
				inst = name
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			in := os.Stdin
			if tty && !term.IsTerminal(int(in.Fd())) {
				return errors.New("-t needs a terminal on standard input; drop -t")
			}
			ctx := cmd.Context()
			opts := client.ExecOptions{Cmd: args[1:], TTY: tty, Stdin: interactive}
			if tty {
				if w, h, err := term.GetSize(int(in.Fd())); err == nil && w > 0 && h > 0 && w <= math.MaxUint16 && h <= math.MaxUint16 {
					opts.Width, opts.Height = uint16(w), uint16(h)
				}
			}
			sc, closer, err := c.Exec(ctx, g.ns(), inst, opts)
			if err != nil {
				return err
			}
			defer closer.Close()
			if tty {
				old, err := term.MakeRaw(int(in.Fd()))
				if err == nil {
					defer term.Restore(int(in.Fd()), old)
				}
				sendSize := func() {
					if w, h, err := term.GetSize(int(in.Fd())); err == nil {
						sc.Write(stream.Resize, stream.ResizePayload(uint16(w), uint16(h)))
					}
				}
				sendSize()
				winch := make(chan os.Signal, 1)
				signal.Notify(winch, syscall.SIGWINCH)
				defer signal.Stop(winch)
				go func() {
					for range winch {
						sendSize()
					}
				}()
			}
			if interactive {
				go func() {
					buf := make([]byte, 32<<10)
					for {
						n, err := in.Read(buf)
						if n > 0 {
							if sc.Write(stream.Stdin, buf[:n]) != nil {
								return
							}
						}
						if err != nil {
							sc.Write(stream.CloseStdin, nil)
							return
						}
					}
				}()
			}
			for {
				t, p, err := sc.Read()
				if err != nil {
					if ctx.Err() != nil {
						return ctx.Err() // Ctrl-C: the client closed the session
					}
					return fmt.Errorf("exec session ended unexpectedly: %w", err)
				}
				switch t {
				case stream.Stdout:
					cmd.OutOrStdout().Write(p)
				case stream.Stderr:
					cmd.ErrOrStderr().Write(p)
				case stream.Error:
					return errors.New(string(p))
				case stream.Exit:
					if code := stream.ParseExit(p); code != 0 {
						return &exitError{code, errSilent}
					}
					return nil
				}
			}
		},
	}
	cmd.Flags().BoolVarP(&interactive, "stdin", "i", false, "pass standard input to the command")
	cmd.Flags().BoolVarP(&tty, "tty", "t", false, "allocate a terminal (use with -i for a shell)")
	return cmd
}
