package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// exitCode is what main would exit with after err.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

// A word that names no command fails in every group, as at the root (a
// typo in a script must not pass for success), and gantry diff keeps 1
// for "something would change": a usage error is 2 there.
func TestUsageErrorsExitNonZero(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"frob"}, 1, `unknown command "frob" for "gantry"`},
		{[]string{"rollout", "udno", "app/hello"}, 1, `unknown command "udno" for "gantry rollout"`},
		{[]string{"secret", "frob"}, 1, `unknown command "frob" for "gantry secret"`},
		{[]string{"completion", "frob"}, 1, `unknown command "frob" for "gantry completion"`},
		{[]string{"completion", "bash"}, 0, ""},
		{[]string{"rollout"}, 0, ""}, // help, as kubectl rollout
		{[]string{"diff", "-f", "x.yaml", "--bogus"}, 2, "unknown flag: --bogus"},
		{[]string{"diff", "stray"}, 2, `"stray": give manifests with -f, as gantry diff -f stray`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			root := newRootCmd()
			var out bytes.Buffer
			root.SetOut(&out)
			root.SetErr(&out)
			root.SetArgs(tc.args)
			err := root.Execute()
			if got := exitCode(err); got != tc.code || tc.says != "" && (err == nil || !strings.Contains(err.Error(), tc.says)) {
				t.Fatalf("exit %d, %v; want %d saying %q", got, err, tc.code, tc.says)
			}
		})
	}
}

func TestCPUShareSaysWhatItIsAShareOf(t *testing.T) {
	limited := v1.Resources{CPU: 100, Limits: &v1.ResourceLimits{CPU: 500}}
	for _, tc := range []struct {
		use, of float64
		r       v1.Resources
		want    string
	}{
		{0.25, 0.5, limited, "50% of limit"},
		{0.8, 0.05, v1.Resources{CPU: 50}, "1600% of request"},
		{0.1, 0, v1.Resources{}, "-"},
	} {
		if got := cpuShare(tc.use, tc.of, tc.r); got != tc.want {
			t.Errorf("cpuShare(%v, %v) = %q, want %q", tc.use, tc.of, got, tc.want)
		}
	}
}
