package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/gantry-dev/gantry/client"
	"github.com/gantry-dev/gantry/internal/pki"
)

// CLIConfig is ~/.gantry/config: where the server is and how to prove who
// you are.
type CLIConfig struct {
	Server string `json:"server"`
	Token  string `json:"token,omitempty"`
	// CA is the PEM of the cluster CA.
	CA string `json:"ca,omitempty"`
	// Registry is host:port of the cluster registry.
	Registry string `json:"registry,omitempty"`
	// Namespace is the default namespace of commands.
	Namespace string `json:"namespace,omitempty"`

	// otherServer is the file's server when --server or GANTRY_SERVER
	// named another: its token and registry were left out.
	otherServer string
}

// defaultHome is the directory of the CLI config and, by default, of the
// data of `gantry up`.
func defaultHome() string {
	if h := os.Getenv("GANTRY_HOME"); h != "" {
		return h
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".gantry"
	}
	return filepath.Join(home, ".gantry")
}

func defaultConfigPath() string {
	if p := os.Getenv("GANTRY_CONFIG"); p != "" {
		return p
	}
	return filepath.Join(defaultHome(), "config")
}

func loadConfig(path string) (*CLIConfig, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &CLIConfig{}, nil
	}
	if err != nil {
		return nil, err
	}
	var c CLIConfig
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

// saveConfig writes the config readable only by its owner: it holds a
// credential.
func saveConfig(path string, c *CLIConfig) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, err := yaml.Marshal(c)
	if err != nil {
		return err
	}
	return pki.WriteFileAtomic(path, b, 0o600)
}

// globals are the flags every client command shares.
type globals struct {
	configPath string
	server     string
	token      string
	namespace  string
	cfg        *CLIConfig
	// warn, when set, hears the server's warnings instead of standard
	// error (apply --dry-run sorts out the ones it expects).
	warn func(text string)
}

func (g *globals) bind(root *cobra.Command) {
	pf := root.PersistentFlags()
	pf.StringVar(&g.configPath, "config", "", "CLI config file (default $GANTRY_CONFIG or ~/.gantry/config)")
	pf.StringVar(&g.server, "server", "", "API server URL (default $GANTRY_SERVER or the config's server)")
	pf.StringVar(&g.token, "token", "", "API token (default $GANTRY_TOKEN or the config's token)")
	pf.StringVarP(&g.namespace, "namespace", "n", "", "namespace (default the config's namespace or \"default\")")
}

func (g *globals) config() (*CLIConfig, error) {
	if g.cfg != nil {
		return g.cfg, nil
	}
	path := g.configPath
	if path == "" {
		path = defaultConfigPath()
	}
	c, err := loadConfig(path)
	if err != nil {
		return nil, err
	}
	saved := c.Server
	tokenGiven := false
	if v := os.Getenv("GANTRY_SERVER"); v != "" {
		c.Server = v
	}
	// A token read from a file or a secret store often ends in a
	// newline, which no token has (login --token - trims it too).
	if v := strings.TrimSpace(os.Getenv("GANTRY_TOKEN")); v != "" {
		c.Token, tokenGiven = v, true
	}
	if g.server != "" {
		c.Server = g.server
	}
	if v := strings.TrimSpace(g.token); v != "" {
		c.Token, tokenGiven = v, true
	}
	if saved != "" && !sameServer(c.Server, saved) {
		// Another cluster than the file's: its token and registry are
		// the file's cluster's, and go nowhere else (as at login).
		if !tokenGiven {
			c.Token = ""
		}
		c.Registry = ""
		c.otherServer = saved
	}
	if v := os.Getenv("GANTRY_REGISTRY"); v != "" {
		c.Registry = v
	}
	g.cfg = c
	return c, nil
}

// sameServer reports whether two server URLs name the same server,
// whatever a trailing slash or the case of the scheme and host say.
func sameServer(a, b string) bool {
	norm := func(s string) string { return strings.ToLower(strings.TrimRight(strings.TrimSpace(s), "/")) }
	return norm(a) == norm(b)
}

func (g *globals) ns() string {
	if g.namespace != "" {
		return g.namespace
	}
	if c, err := g.config(); err == nil && c.Namespace != "" {
		return c.Namespace
	}
	return "default"
}

// listNamespace is the namespace a list command reads: every namespace
// ("") with -A, else the current one.
func (g *globals) listNamespace(all bool) string {
	if all {
		return ""
	}
	return g.ns()
}

// requestTimeout bounds the CLI's ordinary requests; zero leaves the
// client's default. Tests shorten it.
var requestTimeout time.Duration

func (g *globals) client() (*client.Client, error) {
	c, err := g.config()
	if err != nil {
		return nil, err
	}
	if c.Server == "" {
		path := g.configPath
		if path == "" {
			path = defaultConfigPath()
		}
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) && (g.configPath != "" || os.Getenv("GANTRY_CONFIG") != "") {
			// A config named by hand that is not there is more likely
			// a typo than a wish to have none.
			return nil, fmt.Errorf("no Gantry server configured: the config file %s does not exist (check --config or GANTRY_CONFIG), and no --server or GANTRY_SERVER is given", path)
		}
		return nil, errors.New("no Gantry server configured: start one with `gantry up` (it writes ~/.gantry/config), or pass --server / set GANTRY_SERVER")
	}
	if c.Token == "" && c.otherServer != "" {
		// Held back on purpose (it is another server's): say so, rather
		// than send the request without one and report "no token given".
		return nil, fmt.Errorf("the CLI config's token is for %s, not %s: give this server's token with --token or GANTRY_TOKEN, or log in to it (gantry login --server %s)", c.otherServer, c.Server, c.Server)
	}
	return client.New(client.Config{Server: c.Server, Token: c.Token, CA: []byte(c.CA), UserAgent: "gantry-cli/" + version, Timeout: requestTimeout,
		Warnings: func(text string) {
			if g.warn != nil {
				g.warn(text)
				return
			}
			fmt.Fprintln(os.Stderr, "Warning:", text)
		}})
}
