package node

import (
	"strings"
	"testing"

	v1 "github.com/gantry-dev/gantry/api/v1"
)

// A host name longer than 63 characters was cut after the dashes at its
// ends were trimmed: a cut that landed after a '-' or '.' left a name
// ending in '-', which is not a DNS label, so the default node name was
// refused (gantry up / gantry agent without --name failed on such a host).
func TestDefaultNameOfALongHostnameIsAValidName(t *testing.T) {
	host := strings.Repeat("a", 62) + ".b" // 64 characters, Linux's HOST_NAME_MAX
	got := sanitize(host)
	if msg := v1.ValidateName(got, 63); msg != "" {
		t.Errorf("sanitize(%q) = %q: %s", host, got, msg)
	}
}
