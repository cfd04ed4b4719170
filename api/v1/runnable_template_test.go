package v1

import (
	"strings"
	"testing"
)

// Template values that no node can run were accepted (201), and the
// instance then retried CreateFailed (runc refused it), failed every
// probe (the agent could not build the probe's URL), or exited at once
// saying nothing of why; a duplicate file path or one over /etc/hosts
// silently hid a secret or the instance's own name. Each is refused at
// the field now, and the values next to them stay accepted.
func TestTemplatesANodeCannotRunAreRefused(t *testing.T) {
	long := strings.Repeat("x", MaxArgLen+1)
	for _, tc := range []struct {
		name  string
		edit  func(*Template)
		field string // "" when the value is fine
	}{
		{"absolute workingDir", func(t *Template) { t.WorkingDir = "/srv/app" }, ""},
		{"relative workingDir", func(t *Template) { t.WorkingDir = "app" }, "spec.workingDir"},
		{"empty program", func(t *Template) { t.Command = []string{"", "-x"} }, "spec.command[0]"},
		{"empty argument", func(t *Template) { t.Command = []string{"/bin/sh", ""} }, ""},
		{"empty args element", func(t *Template) { t.Args = []string{""} }, ""},
		{"NUL in a command", func(t *Template) { t.Command = []string{"/bin/sh", "a\x00b"} }, "spec.command[1]"},
		{"NUL in args", func(t *Template) { t.Args = []string{"a\x00"} }, "spec.args[0]"},
		{"longest argument", func(t *Template) { t.Args = []string{long[1:]} }, ""},
		{"argument too long", func(t *Template) { t.Args = []string{long} }, "spec.args[0]"},
		{"NUL in an env value", func(t *Template) { t.Env = EnvList{{Name: "A", Value: "x\x00"}} }, "spec.env[0].value"},
		{"env string too long", func(t *Template) { t.Env = EnvList{{Name: "A", Value: long[2:]}} }, "spec.env[0].value"},
		{"longest env string", func(t *Template) { t.Env = EnvList{{Name: "A", Value: long[3:]}} }, ""},
		{"file under /proc", func(t *Template) { t.Files = []FileMount{{Path: "/proc/secret", Secret: "s", Key: "k"}} }, "spec.files[0].path"},
		{"file at /dev", func(t *Template) { t.Files = []FileMount{{Path: "/dev", Secret: "s"}} }, "spec.files[0].path"},
		{"file under /sys", func(t *Template) { t.Files = []FileMount{{Path: "/sys/x", Secret: "s", Key: "k"}} }, "spec.files[0].path"},
		{"file at /devices", func(t *Template) { t.Files = []FileMount{{Path: "/devices", Secret: "s", Key: "k"}} }, ""},
		{"file over /etc/hosts", func(t *Template) { t.Files = []FileMount{{Path: "/etc/hosts", Secret: "s", Key: "k"}} }, "spec.files[0].path"},
		{"file over resolv.conf", func(t *Template) { t.Files = []FileMount{{Path: "/etc/resolv.conf", Secret: "s", Key: "k"}} }, "spec.files[0].path"},
		{"two files at one path", func(t *Template) {
			t.Files = []FileMount{{Path: "/etc/app/key", Secret: "a", Key: "k"}, {Path: "/etc/app/key", Secret: "b", Key: "k"}}
		}, "spec.files[1].path"},
		{"a file in a file", func(t *Template) {
			t.Files = []FileMount{{Path: "/etc/app", Secret: "a", Key: "k"}, {Path: "/etc/app/x", Secret: "b", Key: "k"}}
		}, "spec.files[1].path"},
		{"a directory around a file", func(t *Template) {
			t.Files = []FileMount{{Path: "/etc/app/x", Secret: "b", Key: "k"}, {Path: "/etc/app", Secret: "a"}}
		}, "spec.files[1].path"},
		{"files side by side", func(t *Template) {
			t.Files = []FileMount{{Path: "/etc/app", Secret: "a"}, {Path: "/etc/app2", Secret: "b"}, {Path: "/etc/ap", Secret: "c", Key: "k"}}
		}, ""},
		{"probe path with a query", func(t *Template) { t.Health.Readiness = &Probe{HTTP: &HTTPCheck{Port: 80, Path: "/healthz?full=1"}} }, ""},
		{"probe path escaped", func(t *Template) { t.Health.Readiness = &Probe{HTTP: &HTTPCheck{Port: 80, Path: "/100%25"}} }, ""},
		{"probe path with a bad escape", func(t *Template) { t.Health.Readiness = &Probe{HTTP: &HTTPCheck{Port: 80, Path: "/100%"}} }, "spec.health.readiness.http.path"},
		{"probe path with a tab", func(t *Template) { t.Health.Liveness = &Probe{HTTP: &HTTPCheck{Port: 80, Path: "/a\tb"}} }, "spec.health.liveness.http.path"},
		{"exec probe with no program", func(t *Template) { t.Health.Startup = &Probe{Exec: &ExecCheck{Command: []string{""}}} }, "spec.health.startup.exec.command[0]"},
		{"exec probe with a NUL", func(t *Template) { t.Health.Startup = &Probe{Exec: &ExecCheck{Command: []string{"test", "\x00"}}} }, "spec.health.startup.exec.command[1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &App{TypeMeta: TypeMeta{Kind: "App"}, Metadata: ObjectMeta{Name: "a", Namespace: "default"}}
			a.Spec.Image = "x"
			tc.edit(&a.Spec.Template)
			SetDefaults(a)
			errs := Validate(a)
			if tc.field == "" {
				if len(errs) > 0 {
					t.Fatalf("refused: %v", errs)
				}
				return
			}
			if len(errs) != 1 || errs[0].Field != tc.field {
				t.Fatalf("got %v; want one error at %s", errs, tc.field)
			}
		})
	}
}
