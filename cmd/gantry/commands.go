package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func newVersionCmd(g *globals) *cobra.Command {
	var clientOnly bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the client and server versions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintf(cmd.OutOrStdout(), "Client: %s\n", version)
			if clientOnly {
				return nil
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			var v map[string]string
			if _, err := c.Do(cmd.Context(), "GET", "/version", nil, nil, &v); err != nil {
				return fmt.Errorf("server %s: %w", c.Server(), err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Server: %s (%s)\n", v["version"], c.Server())
			return nil
		},
	}
	cmd.Flags().BoolVar(&clientOnly, "client", false, "print only the client version")
	return cmd
}

// readManifests reads every manifest from files, directories (their .yaml,
// .yml and .json files, not recursively) or "-" for standard input.
// readManifests decodes the manifests at paths; ns ("" for the default)
// is the namespace of namespaced objects whose documents name none.
func readManifests(paths []string, stdin io.Reader, ns string) ([]v1.Object, error) {
	return readDocs(paths, stdin, ns, v1.DecodeManifestsIn)
}

// applyRank orders kinds so that what an object names is applied before
// it: namespaces, then roles and users, then bindings, secrets and
// notifiers, then the rest.
var applyRank = map[string]int{"Namespace": 0, "Role": 1, "User": 1, "RoleBinding": 2, "Secret": 2, "Notifier": 2}

// dryRunner follows a server dry run of several objects, one at a time.
type dryRunner struct {
	pending dryRunPending
	current v1.Object // the object being sent
}

// warnings prints the server's warnings to w but those about an object
// the dry run would create.
func (d *dryRunner) warnings(w io.Writer) func(string) {
	return func(text string) {
		if d.current == nil || !d.pending.expected(d.current, text) {
			fmt.Fprintln(w, "Warning:", text)
		}
	}
}

// dryRunPending holds what a server dry run of a set of objects would
// have created ("kind/namespace/name"), which the server, storing nothing,
// cannot know of when it checks the objects after them.
type dryRunPending map[string]bool

func pendingKey(kind, ns, name string) string {
	return strings.ToLower(kind) + "/" + ns + "/" + name
}

func (p dryRunPending) add(o v1.Object) {
	k, _ := v1.KindOf(o)
	p[pendingKey(k.Kind, o.GetMeta().Namespace, o.GetMeta().Name)] = true
}

// blockedBy names the object that the dry run would create and that o
// must find stored to be checked at all (the server refuses o without
// it), or "".
func (p dryRunPending) blockedBy(o v1.Object) string {
	if ns := o.GetMeta().Namespace; ns != "" && p[pendingKey("Namespace", "", ns)] {
		return "namespace/" + ns
	}
	if b, ok := o.(*v1.RoleBinding); ok {
		if p[pendingKey("Role", "", b.Spec.Role)] {
			return "role/" + b.Spec.Role
		}
		if p[pendingKey("Namespace", "", b.Spec.Namespace)] {
			return "namespace/" + b.Spec.Namespace
		}
	}
	return ""
}

// expected reports whether a warning the server gave on o is about an
// object that the dry run would create (a route's TLS secret, an alert
// rule's notifier): it says only that the object is not stored.
func (p dryRunPending) expected(o v1.Object, text string) bool {
	ns := o.GetMeta().Namespace
	for _, kind := range []string{"secret", "notifier"} {
		for key := range p {
			k, rest, _ := strings.Cut(key, "/")
			kns, name, _ := strings.Cut(rest, "/")
			if k == kind && kns == ns && strings.Contains(text, kind+" "+strconv.Quote(name)) {
				return true
			}
		}
	}
	return false
}

// inApplyOrder returns objs sorted by applyRank, file order kept within a
// rank: a file need not list a Namespace before what goes in it.
func inApplyOrder(objs []v1.Object) []v1.Object {
	rank := func(o v1.Object) int {
		k, _ := v1.KindOf(o)
		if r, ok := applyRank[k.Kind]; ok {
			return r
		}
		return len(applyRank)
	}
	out := slices.Clone(objs)
	slices.SortStableFunc(out, func(a, b v1.Object) int { return rank(a) - rank(b) })
	return out
}

// readRefs is readManifests for a delete, which needs only what each
// document names: one that no longer validates is still deleted.
func readRefs(paths []string, stdin io.Reader, ns string) ([]v1.Object, error) {
	return readDocs(paths, stdin, ns, v1.DecodeRefsIn)
}

func readDocs(paths []string, stdin io.Reader, ns string, decode func(io.Reader, string) ([]v1.Object, error)) ([]v1.Object, error) {
	if len(paths) == 0 {
		return nil, errors.New("give manifests with -f FILE, -f DIR or -f -")
	}
	var objs []v1.Object
	var errs []error
	read := func(name string, r io.Reader) {
		o, err := decode(r, ns)
		objs = append(objs, o...)
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				errs = append(errs, fmt.Errorf("%s: %w", name, e))
			}
		} else if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	for _, p := range paths {
		if p == "-" {
			read("stdin", stdin)
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		files := []string{p}
		if st.IsDir() {
			files = nil
			entries, err := os.ReadDir(p)
			if err != nil {
				return nil, err
			}
			for _, e := range entries {
				switch filepath.Ext(e.Name()) {
				case ".yaml", ".yml", ".json":
					files = append(files, filepath.Join(p, e.Name()))
				}
			}
			if len(files) == 0 {
				return nil, fmt.Errorf("%s holds no .yaml, .yml or .json files", p)
			}
		}
		for _, f := range files {
			fh, err := os.Open(f)
			if err != nil {
				return nil, err
			}
			read(f, fh)
			fh.Close()
		}
	}
	if len(objs) == 0 && len(errs) == 0 {
		return nil, fmt.Errorf("no objects in %s: nothing to do", strings.Join(paths, ", "))
	}
	return objs, errors.Join(errs...)
}

// namespaceClash refuses manifests that an explicit -n contradicts, as
// kubectl does: neither wins silently. Documents that name no namespace
// are in -n's already.
func (g *globals) namespaceClash(objs []v1.Object) error {
	var clash []error
	for _, o := range objs {
		k, _ := v1.KindOf(o)
		if ns := o.GetMeta().Namespace; k.Namespaced && g.namespace != "" && ns != g.namespace {
			clash = append(clash, fmt.Errorf("%s/%s is in namespace %q, but -n says %q: drop -n or change the manifest",
				strings.ToLower(k.Kind), o.GetMeta().Name, ns, g.namespace))
		}
	}
	return errors.Join(clash...)
}

func newApplyCmd(g *globals) *cobra.Command {
	var files []string
	var dryRun string
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|-",
		Short: "Create or update objects from manifests",
		Long: `Create or update every object in the given manifests. A changed App template
makes a new revision and rolls the App out. Nothing is applied if any manifest
is invalid: every problem is printed with its field.

With --dry-run the server checks each object as it would for a real apply
(validation, namespace policy, quota, routes other apps own) and says what the
apply would do, without storing anything; gantry diff shows the changes.`,
		Example: "  gantry apply -f examples/hello.yaml\n  cat app.yaml | gantry apply -f -\n  gantry apply -f web.yaml --dry-run",
		Args:    manifestArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch dryRun {
			case "none", "server":
			case "client":
				return errors.New("--dry-run=client is not supported: manifests are always checked locally first; --dry-run (server) also asks the server")
			default:
				return fmt.Errorf("--dry-run=%s: want server (the default when given) or none", dryRun)
			}
			objs, err := readManifests(files, cmd.InOrStdin(), g.ns())
			if err != nil {
				return err
			}
			if err := g.namespaceClash(objs); err != nil {
				return err
			}
			// A server dry run stores nothing, so what it would create
			// is unknown to the checks of the objects after it.
			dr := &dryRunner{pending: dryRunPending{}}
			if dryRun == "server" {
				g.warn = dr.warnings(cmd.ErrOrStderr())
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			failed, unchecked := 0, 0
			for _, o := range inApplyOrder(objs) {
				k, _ := v1.KindOf(o)
				ref := strings.ToLower(k.Kind) + "/" + o.GetMeta().Name
				apply, suffix := c.Apply, ""
				if dryRun == "server" {
					apply, suffix = c.ApplyDryRun, " (server dry run)"
					if dep := dr.pending.blockedBy(o); dep != "" {
						unchecked++
						fmt.Fprintf(cmd.OutOrStdout(), "%s not checked by the server (server dry run): it needs %s, which this apply creates first; it passed the local checks\n", ref, dep)
						continue
					}
				}
				dr.current = o
				res, err := apply(ctx, o)
				dr.current = nil
				if err != nil {
					failed++
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: ", ref)
					printError(os.Stderr, err)
					continue
				}
				if res == "created" {
					dr.pending.add(o)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s%s\n", ref, res, suffix)
			}
			if failed > 0 {
				what := "applied (the others were)"
				if dryRun == "server" {
					what = "accepted by the server's dry run"
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "%d of %d objects not %s: fix them and apply again\n", failed, len(objs), what)
				return errSilent
			}
			if unchecked > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "%d of %d objects could not be checked by the server before what they need exists: apply without --dry-run to create them in order\n", unchecked, len(objs))
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVarP(&files, "filename", "f", nil, "manifest file, directory, or - for standard input (repeatable)")
	cmd.Flags().StringVar(&dryRun, "dry-run", "none", "server: check everything and say what would change, storing nothing")
	cmd.Flags().Lookup("dry-run").NoOptDefVal = "server"
	return cmd
}

// manifestArgs refuses the arguments of a command that reads manifests
// with -f only (apply), saying what was meant: a file given without -f,
// or a --dry-run value given after a space.
func manifestArgs(cmd *cobra.Command, args []string) error {
	switch {
	case len(args) == 0:
		return nil
	case args[0] == "server" || args[0] == "client" || args[0] == "none":
		return fmt.Errorf("%q: give --dry-run its value with =, as --dry-run=%s (or --dry-run alone for server)", args[0], args[0])
	}
	return fmt.Errorf("%q: give manifests with -f, as %s -f %s", args[0], cmd.CommandPath(), args[0])
}

// parseRef reads "kind/name", "kind name" or "kind" from args.
func parseRef(args []string) (*v1.KindInfo, string, error) {
	if len(args) == 0 {
		return nil, "", errors.New("name a kind, such as apps, instances, nodes")
	}
	kindName, name, slash := strings.Cut(args[0], "/")
	if name == "" && len(args) > 1 {
		name = args[1]
		if name == "" {
			// As kubectl: an empty name (a script's variable that came
			// out empty) names nothing; it must not mean all of them.
			return nil, "", errors.New("the name is empty: give a name, or leave it out to list them all")
		}
	} else if slash && name == "" {
		return nil, "", fmt.Errorf("%q names no object: give KIND/NAME, or KIND alone to list them all", args[0])
	}
	k, ok := v1.LookupKind(kindName)
	if !ok {
		var names []string
		for _, k := range v1.Kinds() {
			names = append(names, k.Plural)
		}
		return nil, "", fmt.Errorf("unknown kind %q; known kinds: %s", kindName, strings.Join(names, ", "))
	}
	return k, name, nil
}

// oneRef reads the one object (or kind) of get and describe: "kind/name",
// "kind name" or "kind". A second object is refused rather than dropped.
func oneRef(args []string) (*v1.KindInfo, string, error) {
	if len(args) > 0 {
		if kind, name, slash := strings.Cut(args[0], "/"); slash {
			switch {
			case name == "":
				return nil, "", fmt.Errorf("%q: give a name after the slash, like %s/hello, or the kind alone to list", args[0], kind)
			case len(args) > 1:
				return nil, "", fmt.Errorf("one object at a time: %q, then %q; give KIND/NAME or KIND NAME", args[0], args[1])
			}
		}
	}
	return parseRef(args)
}

func newGetCmd(g *globals) *cobra.Command {
	var output, selector string
	var all, watch bool
	cmd := &cobra.Command{
		Use:   "get KIND [NAME]",
		Short: "List or show objects",
		Example: `  gantry get apps
  gantry get instances -l gantry.dev/app=hello -o wide
  gantry get app hello -o yaml
  gantry get apps -A`,
		Args: cobra.RangeArgs(1, 2),
		ValidArgsFunction: func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			if len(args) == 0 {
				var names []string
				for _, k := range v1.Kinds() {
					names = append(names, k.Plural)
				}
				return names, cobra.ShellCompDirectiveNoFileComp
			}
			return completeNames(cmd.Context(), g, args[0]), cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			k, name, err := oneRef(args)
			if err != nil {
				return err
			}
			if name != "" && selector != "" {
				// Shown whatever its labels, the object would pass for
				// one that matches (kubectl refuses the pair too).
				return fmt.Errorf("give a name or a selector (-l), not both: gantry get %s -l %s lists the matching ones", k.Plural, selector)
			}
			if name != "" && all && k.Namespaced {
				return fmt.Errorf("a name needs one namespace: use -n NS instead of -A to get %s/%s", strings.ToLower(k.Kind), name)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			ns := g.listNamespace(all)
			if watch {
				if err := checkWatchOutput(output); err != nil {
					return err
				}
				if name != "" {
					// A name no object can have would be watched for
					// in silence.
					if err := client.CheckName(k, "name", name); err != nil {
						return err
					}
					// As kubectl: an object that is not there is an
					// error, not a silent wait for one to appear. (A
					// role that may watch but not get is not asked.)
					if _, err := c.Get(ctx, k.Kind, ns, name); err != nil && !errors.Is(err, v1.ErrForbidden) {
						return err
					}
				}
				return watchObjects(ctx, cmd.OutOrStdout(), c, k, ns, name, selector, output, all)
			}
			if name != "" {
				o, err := c.Get(ctx, k.Kind, ns, name)
				if err != nil {
					return err
				}
				return printObjects(cmd.OutOrStdout(), k.Kind, output, []v1.Object{o}, true, false)
			}
			objs, _, err := c.List(ctx, k.Kind, ns, client.ListOptions{Selector: selector})
			if err != nil {
				return err
			}
			if k.Kind == "RoleBinding" && g.namespace != "" && !all {
				objs = bindingsIn(objs, g.namespace)
			}
			return printObjects(cmd.OutOrStdout(), k.Kind, output, objs, false, all && k.Namespaced)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, wide, json, yaml or name")
	cmd.Flags().StringVarP(&selector, "selector", "l", "", "label selector, e.g. gantry.dev/app=hello,tier!=db")
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "list across every namespace")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "after listing, print changes as they happen")
	return cmd
}

func completeNames(ctx context.Context, g *globals, kind string) []string {
	c, err := g.client()
	if err != nil {
		return nil
	}
	objs, _, err := c.List(ctx, kind, g.ns(), client.ListOptions{})
	if err != nil {
		return nil
	}
	var out []string
	for _, o := range objs {
		out = append(out, o.GetMeta().Name)
	}
	return out
}

// checkWatchOutput refuses an -o that watchObjects does not know, which
// it would otherwise print as a table.
func checkWatchOutput(output string) error {
	switch output {
	case "", "table", "wide", "json", "yaml", "name":
		return nil
	}
	return fmt.Errorf("unknown output format %q: use table, wide, json, yaml or name", output)
}

// watchObjects prints the objects of kind k (only the one called name,
// when it is given) and then their changes, until ctx ends.
func watchObjects(ctx context.Context, w io.Writer, c *client.Client, k *v1.KindInfo, ns, name, selector, output string, all bool) error {
	headers := true
	table := output != "json" && output != "yaml" && output != "name"
	// The objects there at the start (the watch's first ADDED events, up
	// to its first BOOKMARK) print as one table, as get prints them (in
	// time order for events, aligned), then each change as it comes.
	var initial []v1.Object
	listing := table
	flush := func() {
		if listing && len(initial) > 0 {
			printTable(w, k.Kind, initial, output == "wide", all && k.Namespaced, headers)
			headers = false
		}
		listing, initial = false, nil
	}
	for ev := range c.Watch(ctx, k.Kind, ns, client.WatchOptions{Selector: selector}) {
		switch ev.Type {
		case "ERROR":
			flush()
			return ev.Err
		case "BOOKMARK":
			flush()
			continue
		}
		if ev.Type != "ADDED" {
			flush()
		}
		if name != "" && ev.Object.GetMeta().Name != name {
			continue
		}
		switch ev.Type {
		case "DELETED":
			if k.Kind == "Event" && output != "json" && output != "yaml" {
				// Events expire an hour after they happen; a table
				// row for the expiry would print the event again.
				continue
			}
		}
		switch output {
		case "json":
			printJSON(w, map[string]any{"type": ev.Type, "object": ev.Object})
		case "yaml":
			printYAML(w, map[string]any{"type": ev.Type, "object": ev.Object})
			fmt.Fprintln(w, "---")
		case "name":
			fmt.Fprintf(w, "%s/%s\n", strings.ToLower(k.Kind), ev.Object.GetMeta().Name)
		default:
			if listing {
				initial = append(initial, ev.Object)
				continue
			}
			printTable(w, k.Kind, []v1.Object{ev.Object}, output == "wide", all && k.Namespaced, headers)
			headers = false
		}
	}
	flush()
	return ctx.Err()
}

func newDeleteCmd(g *globals) *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:     "delete KIND NAME… | KIND/NAME… | -f FILE",
		Short:   "Delete objects",
		Example: "  gantry delete app hello\n  gantry delete app web api\n  gantry delete app/web secret/db\n  gantry delete -f examples/hello.yaml",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			type target struct {
				k        *v1.KindInfo
				ns, name string
			}
			var targets []target
			switch {
			case len(files) > 0 && len(args) > 0:
				return errors.New("give either -f FILE or KIND NAME…, not both")
			case len(files) > 0:
				objs, err := readRefs(files, cmd.InOrStdin(), g.ns())
				if err != nil {
					return err
				}
				if err := g.namespaceClash(objs); err != nil {
					return err
				}
				// In reverse of apply's order: a Namespace goes last, as
				// deleting it first would take the rest along and leave
				// their deletes "not found", and a Role after its
				// bindings, which must go first.
				for _, o := range slices.Backward(inApplyOrder(objs)) {
					k, _ := v1.KindOf(o)
					targets = append(targets, target{k, o.GetMeta().Namespace, o.GetMeta().Name})
				}
			case len(args) > 0 && strings.Contains(args[0], "/"):
				// kind/name kind/name …
				for _, a := range args {
					k, name, err := parseRef([]string{a})
					if err != nil {
						return err
					}
					if name == "" || !strings.Contains(a, "/") {
						return fmt.Errorf("%q: give every object as KIND/NAME, like app/hello", a)
					}
					targets = append(targets, target{k, g.ns(), name})
				}
			default:
				// kind name name …
				k, name, err := parseRef(args)
				if err != nil {
					return err
				}
				if name == "" {
					return fmt.Errorf("name the %s to delete: gantry delete %s NAME", strings.ToLower(k.Kind), strings.ToLower(k.Kind))
				}
				for _, n := range args[1:] {
					targets = append(targets, target{k, g.ns(), n})
				}
			}
			failed := false
			for _, t := range targets {
				_, err := c.Delete(ctx, t.k.Kind, t.ns, t.name)
				ref := strings.ToLower(t.k.Kind) + "/" + t.name
				if err != nil {
					failed = true
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: ", ref)
					printError(os.Stderr, err)
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s deleted\n", ref)
			}
			if failed {
				return errSilent
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVarP(&files, "filename", "f", nil, "delete the objects in these manifests")
	return cmd
}

func newCreateCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "create", Short: "Create an object from the command line"}
	cmd.AddCommand(&cobra.Command{
		Use:     "namespace NAME",
		Aliases: []string{"ns"},
		Short:   "Create a namespace (a tenant)",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ns := &v1.Namespace{TypeMeta: v1.TypeMeta{Kind: "Namespace"}, Metadata: v1.ObjectMeta{Name: args[0]}}
			if err := v1.Validate(ns).OrNil(); err != nil {
				return err
			}
			if err := c.Create(cmd.Context(), ns); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "namespace/%s created\n", args[0])
			return nil
		},
	})
	return cmd
}

// appClient reads an "app/NAME" argument and returns the name with a
// client.
func (g *globals) appClient(arg string) (string, *client.Client, error) {
	name, err := appArg(arg)
	if err != nil {
		return "", nil, err
	}
	c, err := g.client()
	return name, c, err
}

// appArg reads "app/NAME" or "NAME".
func appArg(arg string) (string, error) {
	name := arg
	if kind, rest, ok := strings.Cut(arg, "/"); ok {
		if k, found := v1.LookupKind(kind); !found || k.Kind != "App" {
			return "", fmt.Errorf("%q: expected app/NAME", arg)
		}
		name = rest
	}
	if name == "" || strings.Contains(name, "/") {
		return "", fmt.Errorf("%q: give an app name, as in app/NAME", arg)
	}
	return name, nil
}

func newScaleCmd(g *globals) *cobra.Command {
	var replicas int32
	cmd := &cobra.Command{
		Use:     "scale app/NAME --replicas N",
		Short:   "Set the number of instances of an app",
		Example: "  gantry scale app/hello --replicas 5",
		Args:    oneApp,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("replicas") {
				return errors.New("--replicas is required")
			}
			name, c, err := g.appClient(args[0])
			if err != nil {
				return err
			}
			a, err := c.Scale(cmd.Context(), g.ns(), name, replicas)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "app/%s scaled to %d\n", name, replicas)
			if as := a.Spec.Autoscale; as != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: app/%s is autoscaled: the autoscaler picks its count between %d and %d, and --replicas counts only until its first decision; change spec.autoscale to move those bounds\n", name, as.Min, as.Max)
			}
			return nil
		},
	}
	cmd.Flags().Int32Var(&replicas, "replicas", 0, "the number of instances")
	return cmd
}

func newRolloutCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "rollout", Short: "Manage the rollouts of an app: status, history, undo, pause, resume, restart"}
	var toRevision int64
	undo := &cobra.Command{
		Use:   "undo app/NAME [--to-revision N]",
		Short: "Roll an app back to its previous (or a given) revision",
		Args:  oneApp,
		RunE: func(cmd *cobra.Command, args []string) error {
			name, c, err := g.appClient(args[0])
			if err != nil {
				return err
			}
			if toRevision < 0 {
				return fmt.Errorf("--to-revision %d: revisions are numbered from 1 (leave it out for the previous one)", toRevision)
			}
			a, err := c.Rollback(cmd.Context(), g.ns(), name, toRevision)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "app/%s rolled back (now revision %d)\n", name, a.Status.Revision)
			return nil
		},
	}
	undo.Flags().Int64Var(&toRevision, "to-revision", 0, "the revision to return to (default: the previous one)")
	var showRevision int64
	var historyOutput string
	history := &cobra.Command{
		Use:   "history app/NAME",
		Short: "List an app's revisions, or show one with --revision",
		Args:  oneApp,
		RunE: func(cmd *cobra.Command, args []string) error {
			name, c, err := g.appClient(args[0])
			if err != nil {
				return err
			}
			if showRevision < 0 {
				return fmt.Errorf("--revision %d: revisions are numbered from 1", showRevision)
			}
			ctx := cmd.Context()
			a, err := client.Get[*v1.App](ctx, c, g.ns(), name)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			switch historyOutput {
			case "":
			case "json", "yaml":
				// The Revision objects, as kubectl rollout history -o gives
				// its ReplicaSets' templates.
				var objs []v1.Object
				if showRevision > 0 {
					r, err := client.Get[*v1.Revision](ctx, c, g.ns(), v1.RevisionName(name, showRevision))
					if errors.Is(err, v1.ErrNotFound) {
						return printRevision(ctx, w, c, a, showRevision) // says why it is missing
					}
					if err != nil {
						return err
					}
					objs = append(objs, r)
				} else {
					revs, err := sortedRevisions(ctx, c, g.ns(), name)
					if err != nil {
						return err
					}
					for _, r := range revs {
						objs = append(objs, r)
					}
				}
				return printObjects(w, "Revision", historyOutput, objs, showRevision > 0, false)
			default:
				return fmt.Errorf("unknown output format %q: use json or yaml, or leave -o out for the table", historyOutput)
			}
			if showRevision > 0 {
				return printRevision(ctx, w, c, a, showRevision)
			}
			revs, err := sortedRevisions(ctx, c, g.ns(), name)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "app/%s\n", name)
			rows := [][]string{{"REVISION", "IMAGE", "CREATED", "CHANGE-CAUSE"}}
			for _, r := range revs {
				rows = append(rows, []string{strconv.FormatInt(r.Spec.Number, 10) + revisionMark(a, r.Spec.Number), r.Spec.Template.Image, age(r.Metadata.Created) + " ago", orDash(r.Spec.ChangeCause)})
			}
			printRows(w, rows)
			return nil
		},
	}
	history.Flags().Int64Var(&showRevision, "revision", 0, "show this revision's template and image")
	history.Flags().StringVarP(&historyOutput, "output", "o", "", "json or yaml: the Revision objects instead of the table")
	// simple runs fn on one app and prints what it says happened.
	simple := func(use, short string, fn func(ctx context.Context, c *client.Client, ns, name string) (string, error)) *cobra.Command {
		return &cobra.Command{
			Use: use + " app/NAME", Short: short, Args: oneApp,
			RunE: func(cmd *cobra.Command, args []string) error {
				name, c, err := g.appClient(args[0])
				if err != nil {
					return err
				}
				said, err := fn(cmd.Context(), c, g.ns(), name)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "app/%s %s\n", name, said)
				return nil
			},
		}
	}
	// pausing says when there was nothing to do, as kubectl does (but
	// succeeds: the App is as asked).
	pausing := func(pause bool, done, already string) func(ctx context.Context, c *client.Client, ns, name string) (string, error) {
		return func(ctx context.Context, c *client.Client, ns, name string) (string, error) {
			// Only for the message: a role that may pause but not
			// read apps gets the plain one.
			before, _ := client.Get[*v1.App](ctx, c, ns, name)
			if _, err := c.Pause(ctx, ns, name, pause); err != nil {
				return "", err
			}
			if before != nil && before.Spec.Paused == pause {
				return already, nil
			}
			return done, nil
		}
	}
	pause := simple("pause", "Stop rolling out template changes until resumed", pausing(true, "paused", "was already paused"))
	resume := simple("resume", "Resume a paused rollout", pausing(false, "resumed", "was not paused"))
	restart := simple("restart", "Replace every instance with a fresh one, rolling, without downtime", func(ctx context.Context, c *client.Client, ns, name string) (string, error) {
		_, err := c.Restart(ctx, ns, name)
		return "restarted", err
	})
	cmd.AddCommand(history, undo, pause, resume, restart, newRolloutStatusCmd(g))
	return cmd
}

func printRows(w io.Writer, rows [][]string) {
	widths := make([]int, 0)
	for _, r := range rows {
		for i, c := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], len(c))
		}
	}
	for _, r := range rows {
		var b strings.Builder
		for i, c := range r {
			if i == len(r)-1 {
				b.WriteString(c)
				break
			}
			b.WriteString(c + strings.Repeat(" ", widths[i]-len(c)+3))
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

// newRolloutStatusCmd follows an app's rollout until it completes (exit 0)
// or fails or is rolled back (exit 1).
func newRolloutStatusCmd(g *globals) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "status app/NAME",
		Short: "Follow a rollout until it finishes; exits non-zero if it fails",
		Long: `Follow the app's rollout until its current revision runs on every replica (exit 0)
or the rollout fails (exit 1): an automatic rollback, a failed first rollout, a stuck one.
After an automatic rollback it reports that failure, and exits 1, until a new revision is
applied. A paused rollout is waited for until it is resumed, or until --timeout.`,
		Args: oneApp,
		RunE: func(cmd *cobra.Command, args []string) error {
			if timeout < 0 {
				return fmt.Errorf("--timeout %s: give a positive duration such as 5m, or leave it out to wait until done", timeout)
			}
			name, c, err := g.appClient(args[0])
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			// A plain read first: a missing app, a wrong namespace or an
			// unreachable server fail at once (the watch would wait and
			// retry).
			if _, err := client.Get[*v1.App](ctx, c, g.ns(), name); err != nil {
				if errors.Is(err, context.DeadlineExceeded) && timeout > 0 {
					return &exitError{1, fmt.Errorf("timed out after %s waiting for app/%s to roll out", timeout, name)}
				}
				return err
			}
			w := cmd.OutOrStdout()
			last := ""
			var startRev int64
			// A watch the server lost our place in (compaction, a
			// restart) ends with ErrResyncRequired; a new one starts
			// from the App as it is now.
			for resync := true; resync && ctx.Err() == nil; {
				resync = false
				for ev := range c.Watch(ctx, "App", g.ns(), client.WatchOptions{}) {
					if ev.Type == "ERROR" {
						if errors.Is(ev.Err, v1.ErrResyncRequired) {
							resync = true
							continue // the watch ends after its ERROR
						}
						return ev.Err
					}
					if ev.Object == nil || ev.Object.GetMeta().Name != name {
						continue
					}
					if ev.Type == "DELETED" {
						return &exitError{1, fmt.Errorf("app/%s was deleted", name)}
					}
					a := ev.Object.(*v1.App)
					if startRev == 0 {
						startRev = a.Status.Revision
					}
					st := a.Status
					desired := a.DesiredReplicas()
					done := st.Phase == v1.AppRunning && st.UpdatedReplicas >= desired && st.ReadyReplicas >= desired && st.Replicas == desired ||
						st.Phase == v1.AppCompleted && st.StableRevision == st.Revision && st.Replicas == desired && st.ObservedReplicas == desired ||
						// A batch App whose instances are partly done (they
						// are never ready again) is complete as the
						// controller judged it.
						a.Spec.Template.RestartPolicy != v1.RestartAlways && st.Phase == v1.AppRunning && st.StableRevision == st.Revision &&
							st.UpdatedReplicas >= desired && st.Replicas == desired && st.ObservedReplicas == desired
					// Scaled to 0 before the revision ever ran: it did
					// not roll out, and never will at 0.
					zeroed := done && desired == 0 && st.StableRevision > 0 && st.StableRevision != st.Revision
					var line string
					switch {
					case st.RolledBack != nil && (st.RolledBack.From >= startRev || st.RolledBack.Revision == st.Revision):
						// The rollout asked for failed: either while we
						// watched, or it is the one the App was rolled back
						// from and nothing was applied since.
						fmt.Fprintf(w, "app/%s: rollout of revision %d failed and was rolled back to the template of revision %d: %s\n", name, st.RolledBack.From, st.RolledBack.To, st.RolledBack.Reason)
						return &exitError{1, errSilent}
					case st.Phase == v1.AppFailed:
						fmt.Fprintf(w, "app/%s: rollout failed: %s\n", name, st.Message)
						return &exitError{1, errSilent}
					case zeroed:
						fmt.Fprintf(w, "app/%s: rollout of revision %d did not finish: %s\n", name, st.Revision, st.Message)
						return &exitError{1, errSilent}
					case st.Stalled && !done && st.ObservedReplicas == desired:
						fmt.Fprintf(w, "app/%s is stuck: %s\n", name, st.Message)
						return &exitError{1, errSilent}
					case a.Spec.Paused && !done:
						// After the failures: a rollout that failed is
						// not waiting for a resume.
						line = fmt.Sprintf("app/%s rollout is paused at revision %d (gantry rollout resume app/%s)", name, st.Revision, name)
					case done && st.Phase == v1.AppCompleted:
						fmt.Fprintf(w, "app/%s successfully rolled out and ran to completion (revision %d, %d/%d succeeded)\n", name, st.Revision, desired, desired)
						return nil
					case done:
						fmt.Fprintf(w, "app/%s successfully rolled out (revision %d, %d/%d ready)\n", name, st.Revision, st.ReadyReplicas, desired)
						return nil
					default:
						line = fmt.Sprintf("Waiting for app/%s rollout of revision %d: %d of %d new instances ready, %d instances in total", name, st.Revision, st.UpdatedReady, desired, st.Replicas)
						if a.Spec.Strategy.MinReady > 0 && st.UpdatedAvailable < st.UpdatedReady {
							line += fmt.Sprintf("; %d ready for less than minReady %s", st.UpdatedReady-st.UpdatedAvailable, a.Spec.Strategy.MinReady)
						}
						if i := strings.Index(st.Message, ": instance "); i >= 0 {
							line += " (" + st.Message[i+2:] + ")"
						}
					}
					if line != last {
						fmt.Fprintln(w, line)
						last = line
					}
				}
			}
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return &exitError{1, fmt.Errorf("timed out after %s waiting for app/%s to roll out", timeout, name)}
			}
			return ctx.Err()
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (default: wait until done)")
	return cmd
}

// revisionMark tells the App's current revision, and the stable one
// (the last that completed a rollout, which an automatic rollback returns
// to) when it is another.
func revisionMark(a *v1.App, n int64) string {
	switch n {
	case a.Status.Revision:
		return " (current)"
	case a.Status.StableRevision:
		return " (stable)"
	}
	return ""
}

// sortedRevisions lists an app's revisions, oldest first.
func sortedRevisions(ctx context.Context, c *client.Client, ns, app string) ([]*v1.Revision, error) {
	revs, _, err := client.List[*v1.Revision](ctx, c, ns, client.ListOptions{Selector: v1.LabelApp + "=" + app})
	if err != nil {
		return nil, err
	}
	sort.Slice(revs, func(i, j int) bool { return revs[i].Spec.Number < revs[j].Spec.Number })
	return revs, nil
}

// printRevision shows one revision of a: what it ran, and its template as
// a manifest would give it.
func printRevision(ctx context.Context, w io.Writer, c *client.Client, a *v1.App, n int64) error {
	name := a.Metadata.Name
	r, err := client.Get[*v1.Revision](ctx, c, a.Metadata.Namespace, v1.RevisionName(name, n))
	if errors.Is(err, v1.ErrNotFound) {
		if n > a.Status.Revision {
			return fmt.Errorf("app/%s has no revision %d: its current revision is %d", name, n, a.Status.Revision)
		}
		return fmt.Errorf("app/%s has no revision %d any more: it keeps the %d before its current one (revisionHistoryLimit); see gantry rollout history app/%s", name, n, a.Spec.HistoryLimit(), name)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "app/%s revision %d%s\n", name, n, revisionMark(a, n))
	image := r.Spec.Image
	if r.Spec.ImageDigest != "" && !strings.Contains(image, "@") {
		image += "@" + r.Spec.ImageDigest
	}
	printRows(w, [][]string{
		{"Image:", image},
		{"Created:", r.Metadata.Created.Local().Format(time.RFC3339) + " (" + age(r.Metadata.Created) + " ago)"},
		{"Change-Cause:", orDash(r.Spec.ChangeCause)},
	})
	fmt.Fprintln(w, "Template:")
	return printYAML(&indent{w: w}, r.Spec.Template)
}

// oneApp takes the one app/NAME argument of scale and rollout, and for
// kubectl's two-word form (app hello) says what to write.
func oneApp(cmd *cobra.Command, args []string) error {
	if len(args) == 2 {
		if k, ok := v1.LookupKind(args[0]); ok && k.Kind == "App" {
			return fmt.Errorf("give the app as one argument: app/%s", args[1])
		}
	}
	if len(args) != 1 {
		return fmt.Errorf("give one app, as app/NAME (got %d arguments)", len(args))
	}
	return nil
}
