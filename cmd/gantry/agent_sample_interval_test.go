package main

import (
	"bytes"
	"strings"
	"testing"
)

// gantry agent took --sample-interval -1s without a word, and its sampler
// then panicked; it is refused first, as --ingress-response-timeout is.
func TestAgentRefusesANegativeSampleInterval(t *testing.T) {
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"agent", "--data-dir", t.TempDir(), "--sample-interval", "-1s"})
	err := root.Execute()
	if err == nil || !strings.Contains(err.Error(), "sample-interval") {
		t.Errorf("agent --sample-interval -1s: %v; want a refusal naming --sample-interval", err)
	}
}
