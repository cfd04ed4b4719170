package build

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// ADD of a tar archive into /opt/app/ must keep every entry below
// /opt/app ("Entry names cannot leave dest", archive.go), as Docker's
// chrooted untar does. A symlink in the archive that points at / (or
// climbs with ..) followed by an entry through it lands outside dest,
// overwriting the image's own files.
func TestAddArchiveStaysInItsDestination(t *testing.T) {
	for _, link := range []string{"/", "../../.."} {
		t.Run(link, func(t *testing.T) {
			root := t.TempDir()
			if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0::/root:/bin/sh\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "lnk", Linkname: link, Mode: 0o777})
			body := "evil::0:0::/:/bin/sh\n"
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "lnk/etc/passwd", Mode: 0o644, Size: int64(len(body))})
			tw.Write([]byte(body))
			tw.Close()

			w := &writer{root: root, keepOwner: true}
			if _, err := w.mkdirAll("/opt/app"); err != nil {
				t.Fatal(err)
			}
			err := extract(context.Background(), &buf, w, "/opt/app")
			got, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
			if string(got) != "root:x:0:0::/root:/bin/sh\n" {
				t.Fatalf("ADD archive /opt/app/ rewrote the image's /etc/passwd to %q (extract err %v)", got, err)
			}
		})
	}
}
