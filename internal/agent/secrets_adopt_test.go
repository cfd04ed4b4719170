package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
)

// After an agent restart, the worker adopts the running container and
// writes its secret files again (restoreSecretFiles). For a files entry
// without `key` (one file per key in a directory), the running
// container's bind mount refers to the directory inode written at
// create time. That started with os.RemoveAll(dir), which unlinked the
// files inside that very inode, so the running app's /run/secrets/db was
// left empty. The fd held here stands for the container's bind mount.
func TestAdoptionKeepsRunningContainersSecretFiles(t *testing.T) {
	a := secretsAgent(t, func() string { return `{"password":"s3cret","user":"app"}` })
	inst := instanceWith(v1.Health{})
	inst.Spec.Template.Files = []v1.FileMount{{Path: "/run/secrets/db", Secret: "db"}}
	w := newWorker(a, inst)

	// The container is created: its files are written and bind-mounted.
	mounts, err := a.secretFiles(context.Background(), inst)
	if err != nil || len(mounts) != 1 {
		t.Fatalf("secretFiles: %v %v", mounts, err)
	}
	mounted, err := os.Open(mounts[0].Source) // what the container's mount sees
	if err != nil {
		t.Fatal(err)
	}
	defer mounted.Close()

	// Agent restart: the running container is adopted.
	w.restoreSecretFiles(context.Background(), inst)

	names, err := os.ReadDir(fmt.Sprintf("/proc/self/fd/%d", mounted.Fd()))
	if err != nil || len(names) != 2 {
		t.Fatalf("the running container's secret directory after adoption holds %d entries (err %v), want its 2 files", len(names), err)
	}
}

// A changed secret reached a running instance's files when its node's
// agent restarted, key by key under the running program, while its
// environment kept the old values. An adopted container keeps the files
// it started with; only files lost (a reboot's emptied tmpfs) are written
// again, from the current values.
func TestAdoptionKeepsTheValuesAContainerStartedWith(t *testing.T) {
	value := `{"password":"first","user":"app"}`
	a := secretsAgent(t, func() string { return value })
	inst := instanceWith(v1.Health{})
	inst.Spec.Template.Files = []v1.FileMount{{Path: "/run/secrets/db", Secret: "db"}, {Path: "/run/secrets/pw", Secret: "db", Key: "password"}}
	w := newWorker(a, inst)
	mounts, err := a.secretFiles(context.Background(), inst)
	if err != nil || len(mounts) != 2 {
		t.Fatalf("secretFiles: %v %v", mounts, err)
	}
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	value = `{"password":"second"}` // changed, and user removed
	w.restoreSecretFiles(context.Background(), inst)
	if got := read(filepath.Join(mounts[0].Source, "password")) + " " + read(mounts[1].Source); got != "first first" {
		t.Errorf("after adoption the files hold %q; want the values the container started with", got)
	}
	if got := read(filepath.Join(mounts[0].Source, "user")); got != "app" {
		t.Errorf("a key removed since was taken from under the container: %q", got)
	}

	// A reboot emptied the tmpfs: written again, from the current values.
	os.RemoveAll(filepath.Dir(mounts[0].Source))
	w.restoreSecretFiles(context.Background(), inst)
	if got := read(filepath.Join(mounts[0].Source, "password")) + " " + read(mounts[1].Source); got != "second second" {
		t.Errorf("files lost and written again hold %q; want the current values", got)
	}
}

// A key directory the agent stopped writing half-way was kept as it was
// by the next adoption, keys missing. Files are written beside their
// place and renamed into it, so a place holds all or nothing.
func TestAHalfWrittenSecretDirectoryIsWrittenAgain(t *testing.T) {
	a := secretsAgent(t, func() string { return `{"password":"s3cret","user":"app"}` })
	inst := instanceWith(v1.Health{})
	inst.Spec.Template.Files = []v1.FileMount{{Path: "/run/secrets/db", Secret: "db"}}
	w := newWorker(a, inst)
	// What an agent killed while writing leaves: the directory beside
	// its place, one key in it.
	dir := filepath.Join(a.secretDir(containerID(inst.Metadata.Key())), "0")
	if err := os.MkdirAll(dir+".new", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir+".new", "user"), []byte("app"), 0o400); err != nil {
		t.Fatal(err)
	}
	w.restoreSecretFiles(context.Background(), inst)
	names, err := os.ReadDir(dir)
	if err != nil || len(names) != 2 {
		t.Fatalf("after adoption the directory holds %v (%v); want both keys", names, err)
	}
}

// secretsAgent is an agent whose API answers every reveal with what
// reveal returns, writing secret files under a temporary directory.
func secretsAgent(t *testing.T, reveal func() string) *Agent {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, reveal())
	}))
	t.Cleanup(srv.Close)
	c, err := client.New(client.Config{Server: srv.URL, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return &Agent{cfg: Config{NodeName: "n1", SecretDir: filepath.Join(t.TempDir(), "secrets")}, api: c, log: slog.New(slog.DiscardHandler)}
}
