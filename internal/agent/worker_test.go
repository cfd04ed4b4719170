package agent

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	v1 "github.com/gantry-dev/gantry/api/v1"
	"github.com/gantry-dev/gantry/client"
	"github.com/gantry-dev/gantry/internal/runtime"
)

func TestBackoffFor(t *testing.T) {
	tests := []struct {
		name string
		n    int
		want time.Duration
	}{
		{"no restart yet needs no pause", 0, 0},
		{"a negative count needs no pause", -5, 0},
		{"the first restart is immediate", 1, 0},
		{"the second restart waits a second", 2, time.Second},
		{"the third restart waits two seconds", 3, 2 * time.Second},
		{"the fourth restart waits four seconds", 4, 4 * time.Second},
		{"the seventh restart waits 32 seconds", 7, 32 * time.Second},
		{"the eighth restart would wait 64s and is capped at a minute", 8, time.Minute},
		{"a count that overflows the shift is capped at a minute", 36, time.Minute},
		{"a count of 64 is capped at a minute", 64, time.Minute},
		{"a count past the width of the shift is capped at a minute", 100, time.Minute},
		{"the largest count is capped at a minute", math.MaxInt, time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := backoffFor(tt.n); got != tt.want {
				t.Errorf("backoffFor(%d) = %s, want %s", tt.n, got, tt.want)
			}
		})
	}

	t.Run("the pause never shrinks and stays within a minute", func(t *testing.T) {
		prev := time.Duration(0)
		for n := 2; n <= 200; n++ {
			d := backoffFor(n)
			if d < prev || d <= 0 || d > time.Minute {
				t.Fatalf("backoffFor(%d) = %s after %s", n, d, prev)
			}
			prev = d
		}
	})
}

func TestExitReason(t *testing.T) {
	tests := []struct {
		name     string
		code     int
		killedBy string
		want     string
	}{
		{"exit code 0 completed", 0, "", "Completed"},
		{"exit code 137 was killed", 137, "", "Killed"},
		{"exit code 1 is an error", 1, "", "Error"},
		{"exit code 143 is an error", 143, "", "Error"},
		{"exit code -1 is an error", -1, "", "Error"},
		{"SIGSYS is a refused system call", 159, "", "BadSyscall"},
		{"a kill by the agent names why, whatever the code", 137, "LivenessFailed", "LivenessFailed"},
		{"a kill by the agent wins over a clean exit", 0, "LivenessFailed", "LivenessFailed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := exitReason(tt.code, tt.killedBy); got != tt.want {
				t.Errorf("exitReason(%d, %q) = %q, want %q", tt.code, tt.killedBy, got, tt.want)
			}
		})
	}
}

func TestExitHint(t *testing.T) {
	if h := exitHint(exitReason(159, "")); !strings.Contains(h, "securityContext.allow32Bit: true") {
		t.Errorf("hint for SIGSYS = %q, want it to name securityContext.allow32Bit", h)
	}
	for _, why := range []string{"Completed", "Killed", "Error", "LivenessFailed"} {
		if h := exitHint(why); h != "" {
			t.Errorf("exitHint(%q) = %q, want none", why, h)
		}
	}
}

func TestDigestOf(t *testing.T) {
	tests := []struct {
		name string
		ref  string
		want string
	}{
		{"a pinned reference gives its digest", "registry.local/web@sha256:abc", "sha256:abc"},
		{"a tag and digest give the digest", "web:1.2@sha256:abc", "sha256:abc"},
		{"a tag alone gives no digest", "web:1.2", ""},
		{"an empty reference gives no digest", "", ""},
		{"a leading @ is not a digest", "@sha256:abc", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := digestOf(tt.ref); got != tt.want {
				t.Errorf("digestOf(%q) = %q, want %q", tt.ref, got, tt.want)
			}
		})
	}
}

func TestStopGrace(t *testing.T) {
	three, zero := v1.Duration(3*time.Second), v1.Duration(0)
	tests := []struct {
		name  string
		grace *v1.Duration
		want  time.Duration
	}{
		{"no grace period uses the default", nil, v1.DefaultStopGracePeriod.D()},
		{"a grace period is used as given", &three, 3 * time.Second},
		{"a zero grace period kills at once", &zero, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i := &v1.Instance{Spec: v1.InstanceSpec{Template: v1.Template{StopGracePeriod: tt.grace}}}
			if got := stopGrace(i); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

// A back-off is waited out whatever updates of the instance wake the
// worker (its own status reports come back as such updates: a crashing
// container was restarted as fast as they came); only removal, or the
// agent stopping, cuts it short.
func TestPauseIsCutShortOnlyByRemoval(t *testing.T) {
	w := newWorker(&Agent{}, instanceWith(v1.Health{}))
	const d = 300 * time.Millisecond
	done := make(chan bool, 1)
	start := time.Now()
	go func() { done <- w.pause(context.Background(), d) }()
	for range 10 {
		time.Sleep(10 * time.Millisecond)
		w.signal() // what update does, without an Agent
	}
	if ran := <-done; !ran || time.Since(start) < d {
		t.Fatalf("pause returned %v after %v under wake-ups; want true after %v", ran, time.Since(start), d)
	}

	go func() { done <- w.pause(context.Background(), time.Minute) }()
	time.Sleep(20 * time.Millisecond)
	w.remove(false)
	select {
	case ran := <-done:
		if ran {
			t.Fatal("a pause cut short by removal says it ran its course")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("removal did not end the pause")
	}

	ctx, cancel := context.WithCancel(context.Background())
	w2 := newWorker(&Agent{}, instanceWith(v1.Health{}))
	go func() { done <- w2.pause(ctx, time.Minute) }()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the agent stopping did not end the pause")
	}
}

// An adopted container's secret files are written again, so that its
// next restart in place finds what its task bind-mounts (the node's
// tmpfs may be new since the container was made); a failure to read the
// secret leaves the running container alone.
func TestAdoptedInstancesGetTheirSecretFilesBack(t *testing.T) {
	var fail atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() || !strings.HasSuffix(r.URL.Path, "/secrets/db/reveal") {
			http.Error(w, `{"code":503,"message":"away"}`, http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"password":"s3cret"}`)
	}))
	t.Cleanup(srv.Close)
	c, err := client.New(client.Config{Server: srv.URL, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	a := &Agent{cfg: Config{NodeName: "n1", SecretDir: filepath.Join(dir, "secrets")}, api: c, log: slog.New(slog.DiscardHandler)}
	inst := instanceWith(v1.Health{})
	inst.Spec.Template.Files = []v1.FileMount{{Path: "/etc/db/password", Secret: "db", Key: "password"}}
	w := newWorker(a, inst)
	src := filepath.Join(a.secretDir(w.id), "0")

	w.restoreSecretFiles(context.Background(), inst)
	if b, err := os.ReadFile(src); err != nil || string(b) != "s3cret" {
		t.Fatalf("%s after adoption: %q, %v", src, b, err)
	}
	// They go to the user the container runs as, as the runtime recorded
	// it (an image's USER, which the App need not name).
	w.adopted = runtime.Container{UID: 65532, GID: 65533, HasUser: true}
	w.restoreSecretFiles(context.Background(), inst)
	if fi, err := os.Stat(src); err != nil {
		t.Fatal(err)
	} else if st := fi.Sys().(*syscall.Stat_t); os.Geteuid() == 0 && (st.Uid != 65532 || st.Gid != 65533 || fi.Mode().Perm() != 0o400) {
		t.Fatalf("%s after adopting a container of user 65532:65533: %v %d:%d", src, fi.Mode().Perm(), st.Uid, st.Gid)
	}
	fail.Store(true)
	w.restoreSecretFiles(context.Background(), inst) // logs, does not panic or block
}
