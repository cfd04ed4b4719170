package build

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeTree writes files (slash paths to contents) under root.
func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// .dockerignore "docs" + "!docs/README.md": docker build sends
// docs/README.md (and its directory), so COPY docs /x copies it. The
// named directory was refused outright.
func TestIgnoreExceptionBelowANamedDirectory(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{"docs/README.md": "r", "docs/internal.md": "i"})
	ig, err := parseIgnore(strings.NewReader("docs\n!docs/README.md\n"))
	if err != nil {
		t.Fatal(err)
	}
	// COPY . works and brings README.md back: the same rules must hold
	// when the directory is named.
	all, err := collectSources(root, []string{"."}, ig)
	if err != nil {
		t.Fatal(err)
	}
	var viaDot []string
	for _, e := range all[0].entries {
		viaDot = append(viaDot, e.rel)
	}
	if len(viaDot) == 0 {
		t.Fatal("COPY . copies nothing of docs")
	}
	srcs, err := collectSources(root, []string{"docs"}, ig)
	if err != nil {
		t.Fatalf("COPY docs /x: %v (docker build copies docs/README.md)", err)
	}
	if len(srcs) != 1 || len(srcs[0].entries) != 1 || srcs[0].entries[0].rel != "README.md" {
		t.Fatalf("COPY docs copies %+v, want README.md only", srcs)
	}
}

// The same with a glob: COPY doc* /x/ copies docs/README.md.
func TestIgnoreExceptionBelowAGlobbedDirectory(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{"docs/README.md": "r", "docs/internal.md": "i"})
	ig, err := parseIgnore(strings.NewReader("docs\n!docs/README.md\n"))
	if err != nil {
		t.Fatal(err)
	}
	srcs, err := collectSources(root, []string{"doc*"}, ig)
	if err != nil {
		t.Fatalf("COPY doc* /x/: %v (docker build copies docs/README.md)", err)
	}
	if len(srcs) != 1 {
		t.Fatalf("got %d sources", len(srcs))
	}
}

// COPY --from=stage /opt/app/current/*.jar /app/ where the stage has
// /opt/app/current -> /opt/app/v1 (an absolute link, normal inside an
// image): the glob was expanded on the host's filesystem, following the
// link to the host's /opt/app/v1, instead of inside the stage's root.
func TestGlobFollowsAnAbsoluteLinkInTheTree(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{"opt/app/v1/app.jar": "jar"})
	if err := os.Symlink("/opt/app/v1", filepath.Join(root, "opt/app/current")); err != nil {
		t.Fatal(err)
	}
	// Without a glob the link is resolved in the tree: this works.
	if _, err := collectSources(root, []string{"/opt/app/current/app.jar"}, nil); err != nil {
		t.Fatalf("plain path: %v", err)
	}
	srcs, err := collectSources(root, []string{"/opt/app/current/*.jar"}, nil)
	if err != nil {
		t.Fatalf("glob through an absolute link of the tree: %v", err)
	}
	if len(srcs) != 1 || srcs[0].name != "app.jar" {
		t.Fatalf("got %+v", srcs)
	}
}

// A glob was matched against the host: a link in the tree to /etc listed
// the host's /etc, and which names exist there showed in the answer.
func TestGlobDoesNotListAHostDirectoryThroughALink(t *testing.T) {
	root := t.TempDir()
	if err := os.Symlink("/etc", filepath.Join(root, "hostetc")); err != nil {
		t.Fatal(err)
	}
	_, err1 := collectSources(root, []string{"hostetc/passw?"}, nil)
	_, err2 := collectSources(root, []string{"hostetc/nosuchfil?"}, nil)
	if err1 != nil && err2 != nil && err1.Error() != strings.Replace(err2.Error(), "nosuchfil?", "passw?", 1) {
		t.Fatalf("the answer differs with what the host's /etc holds: %q vs %q", err1, err2)
	}
}

// A build context whose own path holds a glob character ("app[v2]"):
// COPY *.go /src/ joined the context path into the pattern, so its
// brackets were read as a character class and nothing matched.
func TestGlobInAContextWithABracketInItsPath(t *testing.T) {
	root := filepath.Join(t.TempDir(), "app[v2]")
	writeTree(t, root, map[string]string{"main.go": "package main"})
	srcs, err := collectSources(root, []string{"*.go"}, nil)
	if err != nil {
		t.Fatalf("COPY *.go in a context at %s: %v", root, err)
	}
	if len(srcs) != 1 {
		t.Fatalf("got %d sources", len(srcs))
	}
}
