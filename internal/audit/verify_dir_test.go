package audit

import (
	"strings"
	"testing"
)

// VerifyDir of a directory without any audit file (all deleted, or the
// wrong --dir) is an error, not an intact chain of no records.
func TestVerifyDirWithoutFilesIsAnError(t *testing.T) {
	dir := t.TempDir()
	res, err := VerifyDir(dir)
	if err == nil || !strings.Contains(err.Error(), "no audit files") {
		t.Errorf("VerifyDir of a directory with no audit files: %v (valid %v, %d records checked); want an error", err, res.Valid, res.Checked)
	}
}
