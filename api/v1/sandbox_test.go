package v1

import (
	"strings"
	"testing"
)

// Numbers that reach the kernel are bounded where they are written, so
// that none wraps around or lifts a limit on its way to the container.
func TestSandboxBounds(t *testing.T) {
	tests := []struct {
		name, doc string
		want      string // "" when valid
	}{
		{"runAsUser past 2^31-1", "kind: App\nname: x\nimage: a\nsecurityContext: {runAsUser: 2147483648}", "spec.securityContext.runAsUser: must be between 0 and 2147483647"},
		{"runAsUser that wraps to root", "kind: App\nname: x\nimage: a\nsecurityContext: {runAsUser: 4294967296}", "spec.securityContext.runAsUser: must be between 0 and 2147483647"},
		{"runAsGroup past 2^31-1", "kind: App\nname: x\nimage: a\nsecurityContext: {runAsGroup: 4294967296}", "spec.securityContext.runAsGroup: must be between 0 and 2147483647"},
		{"negative runAsUser", "kind: App\nname: x\nimage: a\nsecurityContext: {runAsUser: -1}", "spec.securityContext.runAsUser"},
		{"the largest uid", "kind: App\nname: x\nimage: a\nsecurityContext: {runAsUser: 2147483647, runAsGroup: 0}", ""},
		{"pids past the bound", "kind: App\nname: x\nimage: a\nresources: {pids: 9223372036854775807}", "spec.resources.pids: must be between 0 (the default, 1024) and 32768"},
		{"pids at the bound", "kind: App\nname: x\nimage: a\nresources: {pids: 32768}", ""},
		{"a policy capability", "kind: Namespace\nname: team\npolicy: {allowCapabilities: [NET_ADMIN, cap_sys_ptrace]}", ""},
		{"ALL in a policy's capabilities", "kind: Namespace\nname: team\npolicy: {allowCapabilities: [all]}", "spec.policy.allowCapabilities[0]"},
		{"a policy capability that is no name", "kind: Namespace\nname: team\npolicy: {allowCapabilities: [NET_ADMIN, 'net admin']}", "spec.policy.allowCapabilities[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeManifest([]byte(tt.doc))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("got %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

func TestCapabilityName(t *testing.T) {
	for in, want := range map[string]string{"NET_ADMIN": "NET_ADMIN", "cap_net_admin": "NET_ADMIN", " Sys_Ptrace ": "SYS_PTRACE", "all": "ALL"} {
		if got := CapabilityName(in); got != want {
			t.Errorf("CapabilityName(%q) = %q, want %q", in, got, want)
		}
	}
}
