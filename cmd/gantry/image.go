package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcr "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/internal/image"
)

// imageEnv is what image commands need: the registry host and how to log
// in to it.
type imageEnv struct {
	registry string
	auth     image.Auth
	ns       string
}

func (g *globals) imageEnv() (*imageEnv, error) {
	c, err := g.config()
	if err != nil {
		return nil, err
	}
	if c.Registry == "" && c.otherServer != "" {
		return nil, fmt.Errorf("the CLI config's registry belongs to %s, not to %s: give this server's registry with GANTRY_REGISTRY=HOST:PORT, or log in to it (gantry login)", c.otherServer, c.Server)
	}
	if c.Registry == "" {
		return nil, errors.New("no registry in the CLI config: run `gantry up` (it writes it) or add `registry: HOST:PORT` to ~/.gantry/config")
	}
	return &imageEnv{registry: c.Registry, auth: imageAuth(c), ns: g.ns()}, nil
}

// imageAuth logs in to the cluster registry with the CLI's token and
// trusts the cluster CA.
func imageAuth(c *CLIConfig) image.Auth {
	auth := image.Auth{Token: c.Token}
	if c.CA != "" {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if pool.AppendCertsFromPEM([]byte(c.CA)) {
			auth.RootCAs = pool
		}
	}
	return auth
}

func (e *imageEnv) ref(r string) string { return image.Reference(e.registry, e.ns, r) }

// checkRef refuses, before any work, an image name r that is no valid
// reference, saying what a name may hold.
func (e *imageEnv) checkRef(r string) error {
	if _, err := name.ParseReference(e.ref(r)); err != nil {
		return fmt.Errorf("image name %q: a repository name is lower-case letters, digits, '.', '_', '-' and '/', and a tag up to 128 letters, digits, '_', '.' and '-' (%v)", r, err)
	}
	return nil
}

// authFor is the registry login for ref: the CLI's token goes to the
// cluster registry only. A reference that names another registry is
// used without credentials, so that the platform token never reaches a
// third party (or its token service).
func (e *imageEnv) authFor(ref string) image.Auth {
	a := e.auth
	if host, _, _ := strings.Cut(ref, "/"); host != strings.TrimSuffix(e.registry, "/") {
		a.Token = ""
	}
	return a
}

// progress returns a progress callback drawing a bar on a terminal.
func progress(cmd *cobra.Command, label string) (func(done, total int64), func()) {
	bar := image.NewBar(cmd.ErrOrStderr(), label)
	return bar.Update, bar.Finish
}

func newImageCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "image", Aliases: []string{"images"}, Short: "Build, push, pull, list, inspect and remove images in the cluster registry"}
	var tag string
	var push bool
	bf := &buildFlags{}
	build := &cobra.Command{
		Use:   "build DIR -t NAME:TAG [--push]",
		Short: "Build an image from a Go main package or a Dockerfile, without a Docker daemon",
		Long: `Build an image from DIR. If DIR holds a Go main package (and no Dockerfile), it is
compiled into a static binary and packed FROM scratch. If DIR has a Dockerfile, its
steps run as Docker would, with RUN executed in a real containerd container.`,
		Example: "  gantry image build ./cmd/web -t web:v1 --push\n  gantry image build . -t app:v2 --push",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if tag == "" {
				return errors.New("name the image with -t NAME:TAG")
			}
			env, err := g.imageEnv()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			dir := args[0]
			var img ggcr.Image
			dockerfile := filepath.Join(dir, "Dockerfile")
			if bf.dockerfile != "" {
				// Named, it must be there: no falling back to a Go build.
				if _, err := os.Stat(bf.dockerfile); err != nil {
					return fmt.Errorf("-f %s: %w (a relative path is taken from the current directory, as docker build takes it)", bf.dockerfile, err)
				}
				dockerfile = bf.dockerfile
			}
			if _, err := os.Stat(dockerfile); err == nil {
				img, err = buildDockerfile(ctx, cmd, g, env, dir, bf)
				if err != nil {
					return err
				}
			} else if image.IsGoMain(ctx, dir) {
				fmt.Fprintf(cmd.ErrOrStderr(), "building Go package %s (static, FROM scratch)\n", dir)
				img, err = image.BuildGo(ctx, dir, image.Config{})
				if err != nil {
					return err
				}
			} else {
				return fmt.Errorf("%s has neither a Dockerfile nor a Go main package", dir)
			}
			d, _ := img.Digest()
			ref := env.ref(tag)
			if !push {
				out := strings.NewReplacer("/", "_", ":", "_").Replace(tag) + ".tar"
				r, err := name.ParseReference(ref, name.Insecure)
				if err != nil {
					return err
				}
				if err := tarball.WriteToFile(out, r, img); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "built %s (%s), saved to %s; push it with --push or `gantry image push %s %s`\n", tag, d, out, out, tag)
				return nil
			}
			up, done := progress(cmd, "push "+tag)
			dig, err := image.Push(ctx, img, ref, env.authFor(ref), up)
			done()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "built and pushed %s@%s\n", ref, dig)
			return nil
		},
	}
	build.Flags().StringVarP(&tag, "tag", "t", "", "image name and tag, e.g. web:v1 (bare names go to the namespace)")
	build.Flags().BoolVar(&push, "push", false, "push to the cluster registry")
	build.Flags().StringVarP(&bf.dockerfile, "file", "f", "", "the Dockerfile (default DIR/Dockerfile; a relative path is from the current directory, as in docker build)")
	build.Flags().StringArrayVar(&bf.args, "build-arg", nil, "ARG values, NAME=VALUE (repeatable)")
	build.Flags().StringVar(&bf.target, "target", "", "build this stage of a multi-stage Dockerfile")
	build.Flags().BoolVar(&bf.noCache, "no-cache", false, "run every step even if cached")
	build.Flags().BoolVar(&bf.hostNet, "network-host", false, "give RUN steps the host's network (default: none)")
	build.Flags().StringVar(&bf.dataDir, "data-dir", "", "where the build cache and containerd live (default ~/.gantry)")

	pushCmd := &cobra.Command{
		Use:   "push SOURCE NAME:TAG",
		Short: "Push an image tarball (docker save, OCI archive) or OCI layout directory",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			env, err := g.imageEnv()
			if err != nil {
				return err
			}
			if err := env.checkRef(args[1]); err != nil {
				return err
			}
			work, err := os.MkdirTemp("", "gantry-push")
			if err != nil {
				return err
			}
			defer os.RemoveAll(work)
			img, err := loadLocalImage(args[0], work)
			if err != nil {
				return err
			}
			up, done := progress(cmd, "push "+args[1])
			d, err := image.Push(cmd.Context(), img, env.ref(args[1]), env.authFor(env.ref(args[1])), up)
			done()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pushed %s@%s\n", env.ref(args[1]), d)
			return nil
		},
	}
	var out string
	pull := &cobra.Command{
		Use:   "pull NAME:TAG [-o FILE.tar]",
		Short: "Download an image as a tarball (loadable by docker load, skopeo, …)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			env, err := g.imageEnv()
			if err != nil {
				return err
			}
			ref := env.ref(args[0])
			img, err := image.Pull(cmd.Context(), ref, env.authFor(ref))
			if err != nil {
				return err
			}
			if out == "" {
				out = strings.NewReplacer("/", "_", ":", "_").Replace(args[0]) + ".tar"
			}
			r, err := name.ParseReference(ref, name.Insecure)
			if err != nil {
				return err
			}
			if err := tarball.WriteToFile(out, r, img); err != nil {
				return err
			}
			d, _ := img.Digest()
			fmt.Fprintf(cmd.OutOrStdout(), "pulled %s (%s) to %s\n", ref, d, out)
			return nil
		},
	}
	pull.Flags().StringVarP(&out, "output", "o", "", "file to write (default NAME_TAG.tar)")
	ls := &cobra.Command{
		Use: "ls", Short: "List repositories and tags you can read", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			env, err := g.imageEnv()
			if err != nil {
				return err
			}
			repos, err := image.List(cmd.Context(), env.registry, env.auth)
			if err != nil {
				return err
			}
			sort.Slice(repos, func(i, j int) bool { return repos[i].Repository < repos[j].Repository })
			rows := [][]string{{"REPOSITORY", "TAGS"}}
			for _, r := range repos {
				rows = append(rows, []string{r.Repository, strings.Join(r.Tags, ", ")})
			}
			printRows(cmd.OutOrStdout(), rows)
			return nil
		},
	}
	tags := &cobra.Command{
		Use: "tags NAME", Short: "List the tags of a repository", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			env, err := g.imageEnv()
			if err != nil {
				return err
			}
			t, err := image.Tags(cmd.Context(), env.ref(args[0]), env.authFor(env.ref(args[0])))
			if err != nil {
				return err
			}
			for _, x := range t {
				fmt.Fprintln(cmd.OutOrStdout(), x)
			}
			return nil
		},
	}
	inspect := &cobra.Command{
		Use: "inspect NAME:TAG", Short: "Show an image's digest, config and layers", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			env, err := g.imageEnv()
			if err != nil {
				return err
			}
			info, err := image.Inspect(cmd.Context(), env.ref(args[0]), env.authFor(env.ref(args[0])))
			if err != nil {
				return err
			}
			return printYAML(cmd.OutOrStdout(), info)
		},
	}
	var force bool
	rm := &cobra.Command{
		Use: "rm NAME:TAG|NAME@DIGEST [--force]", Short: "Delete a tag or manifest (refused while an App runs it, unless --force)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			env, err := g.imageEnv()
			if err != nil {
				return err
			}
			if err := image.Delete(cmd.Context(), env.ref(args[0]), env.authFor(env.ref(args[0])), force); err != nil {
				return err
			}
			ref := env.ref(args[0])
			if strings.Contains(args[0], "@") {
				fmt.Fprintf(cmd.OutOrStdout(), "deleted %s; `gantry registry gc` frees the blobs no other manifest uses (15 minutes after they were last pushed or asked for)\n", ref)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "untagged %s; its manifest stays, pullable by digest (an App's revisions pin digests), until `gantry image rm NAME@DIGEST`; only then can `gantry registry gc` free its blobs\n", ref)
			}
			return nil
		},
	}
	rm.Flags().BoolVar(&force, "force", false, "delete even if a running App uses it")
	var importTag string
	importCmd := &cobra.Command{
		Use:     "import ROOTFS_DIR|TARBALL -t NAME:TAG",
		Short:   "Make an image from a root filesystem (e.g. from debootstrap) or a tarball, and push it",
		Example: "  debootstrap --variant=minbase bookworm /tmp/root\n  gantry image import /tmp/root -t library/debian:12",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if importTag == "" {
				return errors.New("name the image with -t NAME:TAG")
			}
			env, err := g.imageEnv()
			if err != nil {
				return err
			}
			if err := env.checkRef(importTag); err != nil {
				return err
			}
			work, err := os.MkdirTemp("", "gantry-import")
			if err != nil {
				return err
			}
			defer os.RemoveAll(work)
			// /bin/sh is the command when the root has one.
			img, err := image.Import(cmd.Context(), args[0], work, image.Config{})
			if err != nil {
				return err
			}
			up, done := progress(cmd, "push "+importTag)
			d, err := image.Push(cmd.Context(), img, env.ref(importTag), env.authFor(env.ref(importTag)), up)
			done()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported %s as %s@%s\n", args[0], env.ref(importTag), d)
			return nil
		},
	}
	importCmd.Flags().StringVarP(&importTag, "tag", "t", "", "image name and tag")
	seed := &cobra.Command{
		Use:   "seed",
		Short: "Pack Debian's busybox-static into library/busybox:latest, a shell image to build on",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			env, err := g.imageEnv()
			if err != nil {
				return err
			}
			up, done := progress(cmd, "push library/busybox:latest")
			ref, d, err := image.Seed(cmd.Context(), env.registry, env.auth, up)
			done()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "seeded %s@%s\n", ref, d)
			return nil
		},
	}
	cmd.AddCommand(build, pushCmd, pull, ls, tags, inspect, rm, importCmd, seed)
	return cmd
}

// loadLocalImage reads an OCI layout directory, or an image archive
// (unpacked into workDir where it must be), choosing its image alike.
func loadLocalImage(path, workDir string) (ggcr.Image, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		img, err := image.LoadLayout(path)
		if err != nil {
			return nil, fmt.Errorf("push %s: %w", path, err)
		}
		return img, nil
	}
	return image.LoadArchive(path, workDir)
}

func newRegistryCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "registry", Short: "Operate the built-in registry"}
	var gcOutput string
	gc := &cobra.Command{
		Use:   "gc",
		Short: "Remove blobs no manifest references (safe while the registry serves)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			// Checked before the collection runs: its report cannot
			// be asked for again.
			switch gcOutput {
			case "", "json", "yaml":
			default:
				return fmt.Errorf("unknown output format %q: use json or yaml, or leave -o out for a summary", gcOutput)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			var res map[string]any
			// No request timeout: the collection may wait for the
			// registry's write lock, then sweep, for longer than one,
			// and hanging up would cancel it half-way.
			if _, err := c.DoLong(cmd.Context(), "POST", "/api/v1/registry/gc", nil, nil, &res); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			switch gcOutput {
			case "json":
				return printJSON(w, res)
			case "yaml":
				return printYAML(w, res)
			}
			n := func(k string) int64 {
				f, ok := res[k].(float64)
				if !ok {
					// A server from before 2026-11-29 answers
					// capitalized keys.
					f, _ = res[strings.ToUpper(k[:1])+k[1:]].(float64)
				}
				return int64(f)
			}
			fmt.Fprintf(w, "freed %s in %d blobs; kept %d manifests in %d repositories and the %d blobs they use",
				image.HumanBytes(n("bytesFreed")), n("blobsDeleted"), n("manifests"), n("repositories"), n("blobsMarked"))
			if in := n("blobsInFlight"); in > 0 {
				fmt.Fprintf(w, "; %d unused blobs pushed or asked for in the last 15 minutes wait for a later run", in)
			}
			secs, ok := res["seconds"].(float64)
			if !ok {
				ns, _ := res["Duration"].(float64) // nanoseconds, before 2026-11-29
				secs = ns / 1e9
			}
			fmt.Fprintf(w, " (%s)\n", time.Duration(secs*float64(time.Second)).Round(time.Millisecond))
			return nil
		},
	}
	gc.Flags().StringVarP(&gcOutput, "output", "o", "", "json or yaml: the full report")
	cmd.AddCommand(gc)
	return cmd
}
