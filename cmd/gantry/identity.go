package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
)

func newLoginCmd(g *globals) *cobra.Command {
	var caFile string
	cmd := &cobra.Command{
		Use:   "login --server URL --token TOKEN [--ca FILE]",
		Short: "Check a token against a server and save both in the CLI config",
		Example: `  gantry login --server https://gantry.example.com:7443 --token gtk_... --ca ca.crt
  echo "$TOKEN" | gantry login --server https://10.0.0.5:7443 --token -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.config()
			if err != nil {
				return err
			}
			if g.token == "-" {
				var t string
				if _, err := fmt.Fscanln(cmd.InOrStdin(), &t); err != nil && cmd.Context().Err() != nil {
					return cmd.Context().Err() // Ctrl-C while it waited
				}
				c.Token = strings.TrimSpace(t)
			}
			if c.Server == "" || c.Token == "" {
				return errors.New("give --server and --token (or - to read the token from standard input)")
			}
			path := g.configPath
			if path == "" {
				path = defaultConfigPath()
			}
			if stored, err := loadConfig(path); err == nil && stored.Server != "" && !sameServer(stored.Server, c.Server) {
				// Another cluster: its CA, registry and namespaces are
				// not the old one's (image push would send this
				// cluster's token to the old registry).
				c.CA, c.Registry, c.Namespace = "", "", ""
				// Nor is its token: the stored one must not be sent to
				// whatever server was typed.
				if g.token == "" && os.Getenv("GANTRY_TOKEN") == "" {
					return fmt.Errorf("give --token for %s: the saved token is %s's", c.Server, stored.Server)
				}
			}
			if caFile != "" {
				b, err := os.ReadFile(caFile)
				if err != nil {
					return err
				}
				c.CA = string(b)
			}
			cl, err := client.New(client.Config{Server: c.Server, Token: c.Token, CA: []byte(c.CA)})
			if err != nil {
				return err
			}
			var who struct{ User, Node string }
			if _, err := cl.Do(cmd.Context(), "GET", "/api/v1/whoami", nil, nil, &who); err != nil {
				return fmt.Errorf("login to %s: %w", c.Server, err)
			}
			if err := saveConfig(path, c); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "logged in to %s as %s (config %s)\n", c.Server, who.User, path)
			return nil
		},
	}
	cmd.Flags().StringVar(&caFile, "ca", "", "PEM file of the cluster CA (for https servers with the built-in CA)")
	return cmd
}

func newWhoAmICmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "whoami",
		Short: "Print the user the configured token belongs to",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			var who struct{ User, Node string }
			if _, err := c.Do(cmd.Context(), "GET", "/api/v1/whoami", nil, nil, &who); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), who.User)
			return nil
		},
	}
}

func newUserCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "user", Short: "Manage users: create, ls, rm"}
	var role, fullName string
	var withToken bool
	create := &cobra.Command{
		Use:   "create NAME [--role ROLE -n NAMESPACE] [--issue-token]",
		Short: "Create a user, optionally bind a role and issue a token",
		Example: `  gantry user create alice --role developer -n team --issue-token
  gantry user create ops --role cluster-admin`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if msg := v1.ValidateName(args[0], 63); msg != "" {
				return fmt.Errorf("user name %q: it %s", args[0], msg)
			}
			u := &v1.User{TypeMeta: v1.TypeMeta{Kind: "User"}, Metadata: v1.ObjectMeta{Name: args[0]}, Spec: v1.UserSpec{FullName: fullName}}
			if err := v1.Validate(u).OrNil(); err != nil {
				return err
			}
			if role != "" {
				// Checked before anything is made: a role that cannot be
				// bound must not leave the user half made (the corrected
				// command would then find it exists).
				if err := bindRole(cmd, g, c, args[0], role, true); err != nil {
					return err
				}
			}
			if err := c.Create(ctx, u); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "user/%s created\n", args[0])
			if role != "" {
				if err := bindRole(cmd, g, c, args[0], role, false); err != nil {
					return err
				}
			}
			if withToken {
				t, err := c.CreateToken(ctx, v1.TokenSpec{User: args[0], Description: "created with the user"})
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "token %s (shown once, keep it safe):\n%s\n", t.Metadata.Name, t.Secret)
			}
			return nil
		},
	}
	create.Flags().StringVar(&role, "role", "", "bind this role (cluster-admin, admin, developer, viewer or a custom one) in -n NAMESPACE; cluster-admin binds everywhere")
	create.Flags().StringVar(&fullName, "full-name", "", "the user's full name")
	// Not --token, which is the global flag of the caller's own token.
	create.Flags().BoolVar(&withToken, "issue-token", false, "also issue an API token for the user and print it")
	list := &listOutput{}
	ls := &cobra.Command{
		Use: "ls", Short: "List users", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := list.check(); err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			objs, _, err := c.List(cmd.Context(), "User", "", client.ListOptions{})
			if err != nil {
				return err
			}
			return list.print(cmd, "User", objs, func() { printTable(cmd.OutOrStdout(), "User", objs, false, false, true) })
		},
	}
	list.bind(ls)
	rm := &cobra.Command{
		Use: "rm NAME", Short: "Delete a user (their tokens stop working at once)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			// The server deletes the user's tokens and role bindings
			// with them, so a later user of the same name inherits
			// nothing.
			if _, err := c.Delete(cmd.Context(), "User", "", args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "user/%s deleted\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, ls, rm)
	return cmd
}

// bindRole binds role to user in -n's namespace (everywhere for
// cluster-admin); with dry set, it only asks the server whether it would.
func bindRole(cmd *cobra.Command, g *globals, c *client.Client, user, role string, dry bool) error {
	ns := g.ns()
	if role == "cluster-admin" {
		ns = "*"
	}
	spec := v1.RoleBindingSpec{User: user, Role: role, Namespace: ns}
	name := bindingName(spec, false)
	if cur, err := client.Get[*v1.RoleBinding](cmd.Context(), c, "", name); err == nil && cur.Spec != spec {
		// "a-b" as developer and "a" as "b-developer" read alike: the
		// other binding keeps its name, and this one gets a hashed one.
		name = bindingName(spec, true)
	}
	b := &v1.RoleBinding{TypeMeta: v1.TypeMeta{Kind: "RoleBinding"}, Metadata: v1.ObjectMeta{Name: name}, Spec: spec}
	if err := v1.Validate(b).OrNil(); err != nil {
		return err
	}
	if cur, err := client.Get[*v1.RoleBinding](cmd.Context(), c, "", name); err == nil && cur.Spec != spec {
		return fmt.Errorf("rolebinding/%s already binds %s as %s in %q: unbind it first", name, cur.Spec.User, cur.Spec.Role, cur.Spec.Namespace)
	}
	if dry {
		_, err := c.ApplyDryRun(cmd.Context(), b)
		return err
	}
	if _, err := c.Apply(cmd.Context(), b); err != nil {
		return err
	}
	where := "namespace " + ns
	if ns == "*" {
		where = "every namespace"
	}
	fmt.Fprintf(cmd.OutOrStdout(), "rolebinding/%s: %s is %s in %s\n", name, user, role, where)
	return nil
}

// bindingName names the binding of spec USER-ROLE-NAMESPACE, cut to fit
// a name and made unique with a hash of spec when it is too long or
// hashed is set.
func bindingName(spec v1.RoleBindingSpec, hashed bool) string {
	name := spec.User + "-" + spec.Role + "-" + strings.ReplaceAll(spec.Namespace, "*", "all")
	if !hashed && len(name) <= 63 {
		return name
	}
	sum := sha256.Sum256([]byte(spec.User + "\x00" + spec.Role + "\x00" + spec.Namespace))
	suffix := "-" + hex.EncodeToString(sum[:4])
	return strings.TrimRight(name[:min(len(name), 63-len(suffix))], "-.") + suffix
}

func newRoleCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "role", Short: "Grant and list roles: bind, unbind, ls"}
	bind := &cobra.Command{
		Use:     "bind USER ROLE [-n NAMESPACE]",
		Short:   "Give a user a role in a namespace (cluster-admin: everywhere)",
		Example: "  gantry role bind alice developer -n team",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			return bindRole(cmd, g, c, args[0], args[1], false)
		},
	}
	list := &listOutput{}
	ls := &cobra.Command{
		Use: "ls", Short: "List role bindings", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := list.check(); err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			objs, _, err := c.List(cmd.Context(), "RoleBinding", "", client.ListOptions{})
			if err != nil {
				return err
			}
			if g.namespace != "" {
				objs = bindingsIn(objs, g.namespace)
			}
			return list.print(cmd, "RoleBinding", objs, func() { printTable(cmd.OutOrStdout(), "RoleBinding", objs, false, false, true) })
		},
	}
	list.bind(ls)
	unbind := &cobra.Command{
		Use: "unbind BINDING", Short: "Remove a role binding", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if _, err := c.Delete(cmd.Context(), "RoleBinding", "", args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rolebinding/%s deleted\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(bind, ls, unbind)
	return cmd
}

func newTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Manage API tokens: create, ls, revoke"}
	var user, desc string
	var expires time.Duration
	create := &cobra.Command{
		Use:     "create [--user USER] [--expires 720h] [--description TEXT]",
		Short:   "Issue an API token; its secret is printed once",
		Example: "  gantry token create --user alice --expires 24h --description ci",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if expires < 0 || (cmd.Flags().Changed("expires") && expires == 0) {
				return fmt.Errorf("--expires %s: give a lifetime such as 24h, or leave the flag out for a token that does not expire", expires)
			}
			if expires > 0 && expires < time.Second {
				// Expiry is kept to the second: less would expire as it
				// is made (and be refused, naming spec.expires).
				return fmt.Errorf("--expires %s: give at least 1s, such as 24h", expires)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			spec := v1.TokenSpec{User: user, Description: desc}
			if expires > 0 {
				t := time.Now().Add(expires).UTC().Truncate(time.Second)
				spec.Expires = &t
			}
			t, err := c.CreateToken(cmd.Context(), spec)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "token %s for %s (shown once, keep it safe):\n", t.Metadata.Name, t.Spec.User)
			fmt.Fprintln(cmd.OutOrStdout(), t.Secret)
			return nil
		},
	}
	create.Flags().StringVar(&user, "user", "", "the user the token acts as (default: you)")
	create.Flags().DurationVar(&expires, "expires", 0, "lifetime, e.g. 24h (default: no expiry)")
	create.Flags().StringVar(&desc, "description", "", "what the token is for")
	list := &listOutput{}
	ls := &cobra.Command{
		Use: "ls", Short: "List tokens (never their secrets)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := list.check(); err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			objs, _, err := c.List(cmd.Context(), "Token", "", client.ListOptions{})
			if err != nil {
				return err
			}
			return list.print(cmd, "Token", objs, func() { printTable(cmd.OutOrStdout(), "Token", objs, false, false, true) })
		},
	}
	list.bind(ls)
	revoke := &cobra.Command{
		Use: "revoke ID", Short: "Revoke a token at once", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			t, err := client.Get[*v1.Token](ctx, c, "", args[0])
			if err != nil {
				return err
			}
			t.Spec.Revoked = true
			if err := c.Update(ctx, t); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "token/%s revoked\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, ls, revoke)
	return cmd
}

// bindingsIn keeps the role bindings of namespace ns (-n given to a list
// of them, which are cluster objects, each naming its namespace): those
// that grant there, "*" (every namespace) included.
func bindingsIn(objs []v1.Object, ns string) []v1.Object {
	var out []v1.Object
	for _, o := range objs {
		if b, ok := o.(*v1.RoleBinding); ok && (b.Spec.Namespace == ns || b.Spec.Namespace == "*") {
			out = append(out, o)
		}
	}
	return out
}
