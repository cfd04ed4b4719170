package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// newTestCA makes a CA in a temporary data directory.
func newTestCA(t testing.TB) (*CA, string) {
	t.Helper()
	dir := t.TempDir()
	ca, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ca, dir
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestFirstStartMakesACAThatLaterStartsLoad(t *testing.T) {
	ca, dir := newTestCA(t)
	c := ca.Certificate()
	if !c.IsCA || !c.MaxPathLenZero || c.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Fatalf("not a leaf-only CA: isCA %v maxPathLenZero %v usage %v", c.IsCA, c.MaxPathLenZero, c.KeyUsage)
	}
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Fatalf("CA key is %T, want ECDSA P-256", c.PublicKey)
	}
	if life := c.NotAfter.Sub(c.NotBefore); life < CAValidity || life > CAValidity+time.Hour {
		t.Fatalf("CA valid for %v, want about ten years", life)
	}
	if got := mode(t, filepath.Join(dir, "pki", "ca.key")); got != 0o600 {
		t.Fatalf("ca.key mode %04o, want 0600", got)
	}
	if got := mode(t, filepath.Join(dir, "pki")); got != 0o700 {
		t.Fatalf("pki directory mode %04o, want 0700", got)
	}
	again, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Certificate().Raw, c.Raw) {
		t.Fatal("second start made a new CA")
	}
	// A certificate issued before the restart verifies after it.
	srv, err := ca.IssueServer([]string{"api"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Verify(srv.Leaf, x509.ExtKeyUsageServerAuth); err != nil {
		t.Fatalf("verify after restart: %v", err)
	}
}

func TestCAFilesAreChecked(t *testing.T) {
	t.Run("a CA key readable by group or others is refused", func(t *testing.T) {
		for _, m := range []os.FileMode{0o640, 0o604, 0o644, 0o660} {
			_, dir := newTestCA(t)
			key := filepath.Join(dir, "pki", "ca.key")
			if err := os.Chmod(key, m); err != nil {
				t.Fatal(err)
			}
			_, err := LoadOrCreateCA(dir)
			if !errors.Is(err, ErrInsecureKeyFile) || !strings.Contains(err.Error(), "chmod 600") {
				t.Fatalf("mode %04o: got %v, want ErrInsecureKeyFile with a fix", m, err)
			}
		}
	})
	t.Run("a certificate that does not match the key is refused", func(t *testing.T) {
		_, dir := newTestCA(t)
		_, other := newTestCA(t)
		b, _ := os.ReadFile(filepath.Join(other, "pki", "ca.crt"))
		if err := os.WriteFile(filepath.Join(dir, "pki", "ca.crt"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadOrCreateCA(dir); err == nil || !strings.Contains(err.Error(), "does not match") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("a key left without its certificate by a crash gets a certificate", func(t *testing.T) {
		ca, dir := newTestCA(t)
		if err := os.Remove(filepath.Join(dir, "pki", "ca.crt")); err != nil {
			t.Fatal(err)
		}
		again, err := LoadOrCreateCA(dir)
		if err != nil {
			t.Fatal(err)
		}
		if !again.Certificate().PublicKey.(*ecdsa.PublicKey).Equal(ca.Certificate().PublicKey) {
			t.Fatal("the recovered certificate is for another key")
		}
	})
	t.Run("a certificate without its key is refused, and no key is made", func(t *testing.T) {
		_, dir := newTestCA(t)
		key := filepath.Join(dir, "pki", "ca.key")
		if err := os.Remove(key); err != nil {
			t.Fatal(err)
		}
		_, err := LoadOrCreateCA(dir)
		if err == nil || !strings.Contains(err.Error(), "ca.key is missing") || !strings.Contains(err.Error(), "restore") {
			t.Fatalf("got %v; want an error naming the missing key and what to do", err)
		}
		if _, err := os.Lstat(key); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a refused start left a new %s (%v)", key, err)
		}
	})
	t.Run("links to a volume not mounted yet are not replaced by a new CA", func(t *testing.T) {
		dir := t.TempDir()
		vault := filepath.Join(t.TempDir(), "vault")
		if err := os.MkdirAll(Dir(dir), 0o700); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"ca.key", "ca.crt"} {
			if err := os.Symlink(filepath.Join(vault, f), filepath.Join(Dir(dir), f)); err != nil {
				t.Fatal(err)
			}
		}
		_, err := LoadOrCreateCA(dir)
		if err == nil || !strings.Contains(err.Error(), "volume mounted") {
			t.Errorf("got %v; want an error saying the link's target is missing", err)
		}
		for _, f := range []string{"ca.key", "ca.crt"} {
			fi, err := os.Lstat(filepath.Join(Dir(dir), f))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode()&os.ModeSymlink == 0 {
				t.Errorf("%s: the link was replaced by a new file", f)
			}
		}
		// Once the volume is there, the CA made in it is loaded.
		if err := os.MkdirAll(vault, 0o700); err != nil {
			t.Fatal(err)
		}
		ca, other := newTestCA(t)
		for _, f := range []string{"ca.key", "ca.crt"} {
			if err := os.Rename(filepath.Join(Dir(other), f), filepath.Join(vault, f)); err != nil {
				t.Fatal(err)
			}
		}
		again, err := LoadOrCreateCA(dir)
		if err != nil {
			t.Fatalf("after the volume came: %v", err)
		}
		if !bytes.Equal(again.Certificate().Raw, ca.Certificate().Raw) {
			t.Error("the CA loaded through the links is not the one in the volume")
		}
	})
	t.Run("an expired CA is refused with what to do", func(t *testing.T) {
		dir := t.TempDir()
		past := func() time.Time { return time.Now().Add(-CAValidity - 24*time.Hour) }
		if _, err := loadOrCreateCA(dir, past); err != nil {
			t.Fatal(err)
		}
		_, err := LoadOrCreateCA(dir)
		if err == nil || !strings.Contains(err.Error(), "expired") || !strings.Contains(err.Error(), "re-join") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("garbage in ca.crt is an error", func(t *testing.T) {
		_, dir := newTestCA(t)
		if err := os.WriteFile(filepath.Join(dir, "pki", "ca.crt"), []byte("nope"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadOrCreateCA(dir); err == nil {
			t.Fatal("loaded a CA from garbage")
		}
	})
}

func TestLeavesNeverOutliveTheCA(t *testing.T) {
	dir := t.TempDir()
	// A CA made nine and a half years ago has six months left.
	made := time.Now().Add(-CAValidity + 180*24*time.Hour)
	ca, err := loadOrCreateCA(dir, func() time.Time { return made })
	if err != nil {
		t.Fatal(err)
	}
	ca.now = time.Now
	c, err := ca.IssueServer([]string{"api"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Leaf.NotAfter.After(ca.Certificate().NotAfter) {
		t.Fatalf("leaf expires %v, after the CA (%v)", c.Leaf.NotAfter, ca.Certificate().NotAfter)
	}
}

func TestPinIsTheHashOfTheCAKey(t *testing.T) {
	ca, dir := newTestCA(t)
	other, _ := newTestCA(t)
	if len(ca.Pin()) != 52 || ca.Pin() == other.Pin() {
		t.Fatalf("pins %q and %q", ca.Pin(), other.Pin())
	}
	// A new certificate for the same key keeps the pin: the pin is of
	// the key, so re-signing the CA does not invalidate join tokens.
	os.Remove(filepath.Join(dir, "pki", "ca.crt"))
	again, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if again.Pin() != ca.Pin() {
		t.Fatal("pin changed with the certificate")
	}
}
