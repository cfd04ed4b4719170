package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// TestRegistryAndBuilds covers issue 4 on a real gantry up: a Dockerfile
// with RUN steps built into the registry and run as an App, the layer
// cache, skopeo round trips, push events, the in-use delete guard, and the
// registry's answers to bad requests.
func TestRegistryAndBuilds(t *testing.T) {
	c := StartCluster(t, ClusterOptions{})
	c.MustGantry("", "image", "seed")

	t.Run("a Dockerfile with two RUN steps, COPY and CMD builds, pushes and runs", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "greeting.txt"), []byte("copied-file-ok\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(`FROM library/busybox
RUN echo run-one-ok > /one.txt
RUN echo run-two-ok > /two.txt && date +%s%N > /built-at
COPY greeting.txt /greeting.txt
CMD ["/bin/sh", "-c", "cat /one.txt /two.txt /greeting.txt; while true; do sleep 3600; done"]
`), 0o644)
		start := time.Now()
		out, errOut, code := c.Gantry("", "image", "build", dir, "-t", "built:v1", "--push", "--data-dir", c.Dir)
		if code != 0 {
			t.Fatalf("build: exit %d\n%s%s", code, out, errOut)
		}
		t.Logf("first build took %s", time.Since(start).Round(time.Millisecond))
		first := digestIn(out)
		c.apply("kind: App\nname: built\nimage: built:v1\nresources: {cpu: 10m, memory: 16Mi}\nstopGracePeriod: 1s\n")
		Eventually(t, 60*time.Second, "built app logging its files", func() bool {
			logs, _, _ := c.Gantry("", "logs", "app/built")
			return strings.Contains(logs, "run-one-ok") && strings.Contains(logs, "run-two-ok") && strings.Contains(logs, "copied-file-ok")
		})

		start = time.Now()
		out, errOut, code = c.Gantry("", "image", "build", dir, "-t", "built:v1", "--push", "--data-dir", c.Dir)
		took := time.Since(start)
		if code != 0 {
			t.Fatalf("rebuild: exit %d\n%s%s", code, out, errOut)
		}
		if d := digestIn(out); d == "" || d != first {
			t.Errorf("a rebuild with no change gave %s, first build %s: the cache was not used (a RUN writes the time)", d, first)
		}
		t.Logf("cached rebuild (whole CLI run, push included) took %s", took.Round(time.Millisecond))
	})

	t.Run("skopeo pushes an OCI layout and pulls it back byte-identical; an App runs it", func(t *testing.T) {
		if _, err := exec.LookPath("skopeo"); err != nil {
			requireTool(t, "skopeo")
		}
		src := t.TempDir()
		img := WebappImage(t)
		p, err := layout.Write(src, emptyIndex())
		if err != nil {
			t.Fatal(err)
		}
		if err := p.AppendImage(img); err != nil {
			t.Fatal(err)
		}
		certs := t.TempDir()
		os.WriteFile(filepath.Join(certs, "ca.crt"), c.CA, 0o644)
		creds := "any:" + c.Token
		dst := "docker://" + c.RegAddr + "/default/skopeo:v1"
		run := func(args ...string) {
			t.Helper()
			out, err := exec.Command("skopeo", args...).CombinedOutput()
			if err != nil {
				t.Fatalf("skopeo %v: %v\n%s", args, err, out)
			}
		}
		run("copy", "--preserve-digests", "--dest-creds", creds, "--dest-cert-dir", certs, "oci:"+src, dst)
		back := t.TempDir()
		run("copy", "--preserve-digests", "--src-creds", creds, "--src-cert-dir", certs, dst, "oci:"+back)
		for _, d := range blobDigests(t, src) {
			a, _ := os.ReadFile(filepath.Join(src, "blobs", "sha256", d))
			b, err := os.ReadFile(filepath.Join(back, "blobs", "sha256", d))
			if err != nil || !bytes.Equal(a, b) {
				t.Fatalf("blob %s did not come back identical (%v)", d, err)
			}
		}
		c.apply(strings.Replace(webapp("skopeoapp", "default", "v1", 1, ""), "image: webapp:v1", "image: skopeo:v1", 1))
		c.waitRunning("default", "skopeoapp", 1, 60*time.Second)
	})

	t.Run("pushes are events, and a tag a running App uses cannot be deleted unless forced", func(t *testing.T) {
		ev := c.MustGantry("", "events")
		if !strings.Contains(ev, "ImagePushed") || !strings.Contains(ev, "built:v1") {
			t.Errorf("no ImagePushed event for built:v1:\n%s", ev)
		}
		_, errOut, code := c.Gantry("", "image", "rm", "built:v1")
		if code == 0 || !strings.Contains(errOut, "app default/built") {
			t.Fatalf("deleting a tag in use: exit %d %q", code, errOut)
		}
		c.MustGantry("", "delete", "app", "built")
		if out := c.MustGantry("", "image", "rm", "built:v1", "--force"); !strings.Contains(out, "untagged") || !strings.Contains(out, "manifest stays") {
			t.Fatalf("forced delete of a tag: %q", out)
		}
		if out := c.MustGantry("", "registry", "gc"); !strings.Contains(out, "freed ") || !strings.Contains(out, "kept ") {
			t.Fatalf("registry gc: %q", out)
		}
	})

	t.Run("the registry refuses bad requests with the spec's codes", func(t *testing.T) {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.ImageAuthTLS()}, Timeout: 10 * time.Second}
		base := "https://" + c.RegAddr + "/v2/"
		req, _ := http.NewRequest(http.MethodPost, base+"default/anon/blobs/uploads/", nil)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "Bearer realm=") {
			t.Fatalf("unauthenticated push: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
		do := func(method, path string, body []byte) (int, string) {
			req, _ := http.NewRequest(method, base+path, bytes.NewReader(body))
			req.SetBasicAuth("e2e", c.Token)
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b)
		}
		blob := []byte("some bytes")
		wrong := sha256.Sum256([]byte("other bytes"))
		code, body := do(http.MethodPost, "default/digests/blobs/uploads/?digest=sha256:"+hex.EncodeToString(wrong[:]), blob)
		if code != 400 || !strings.Contains(body, "DIGEST_INVALID") {
			t.Errorf("wrong digest: %d %s", code, body)
		}
		for _, name := range []string{"default/../etc", "default/UPPER"} {
			code, body := do(http.MethodGet, name+"/tags/list", nil)
			if code != 400 && code != 404 || !strings.Contains(body, "NAME_INVALID") && code == 400 {
				t.Errorf("name %q: %d %s", name, code, body)
			}
		}
		big := bytes.Repeat([]byte("a"), 4<<20+1)
		code, body = do(http.MethodPut, "default/big/manifests/v1", big)
		if code != 413 && code != 400 {
			t.Errorf("a manifest over 4 MiB: %d %.200s", code, body)
		}
	})
}

// digestIn finds "@sha256:…" in the build command's output.
func digestIn(out string) string {
	i := strings.Index(out, "@sha256:")
	if i < 0 {
		return ""
	}
	return strings.Fields(out[i+1:])[0]
}

func blobDigests(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}
