package secrets

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestFirstStartCreatesAPrivateKeyFileThatLaterStartsReuse(t *testing.T) {
	t.Setenv(EnvMasterKey, "")
	dir := t.TempDir()
	kr, err := LoadKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := KeyFile(dir)
	if kr.Path() != path || kr.FromEnv() {
		t.Fatalf("keyring source: path %q fromEnv %v", kr.Path(), kr.FromEnv())
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %04o, want 0600", fi.Mode().Perm())
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Fatalf("key directory mode %04o, want 0700", di.Mode().Perm())
	}
	again, err := LoadKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	if again.CurrentID() != kr.CurrentID() {
		t.Fatalf("second start made a new key: %s then %s", kr.CurrentID(), again.CurrentID())
	}
	// A value sealed before the restart opens after it.
	s := mustSeal(t, NewCodec(kr), "a", "b", map[string][]byte{"k": []byte("v")})
	if _, err := NewCodec(again).Open("a", "b", s); err != nil {
		t.Fatalf("open after restart: %v", err)
	}
}

func TestConcurrentFirstStartsAgreeOnOneKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets", "master.key")
	ids := make([]string, 8)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() {
			kr, err := OpenKeyFile(path)
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = kr.CurrentID()
		})
	}
	wg.Wait()
	for _, id := range ids[1:] {
		if id != ids[0] {
			t.Fatalf("concurrent first starts made different keys: %v", ids)
		}
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".master.key-*"))
	if len(left) != 0 {
		t.Fatalf("temporary files left behind: %v", left)
	}
}

func TestKeyFilePermissions(t *testing.T) {
	k, _ := GenerateKey()
	for _, tc := range []struct {
		mode   os.FileMode
		refuse bool
	}{
		{0o600, false},
		{0o400, false},
		{0o640, true},
		{0o604, true},
		{0o660, true},
		{0o644, true},
		{0o602, true},
		{0o777, true},
	} {
		name := "a key file with mode " + tc.mode.String()
		if tc.refuse {
			name += " is refused"
		} else {
			name += " is used"
		}
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "master.key")
			if err := os.WriteFile(path, []byte(EncodeKey(k)+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tc.mode); err != nil {
				t.Fatal(err)
			}
			kr, err := OpenKeyFile(path)
			if tc.refuse {
				if !errors.Is(err, ErrInsecureKeyFile) {
					t.Fatalf("got %v, want ErrInsecureKeyFile", err)
				}
				if !strings.Contains(err.Error(), "chmod 600") {
					t.Fatalf("error does not say how to fix it: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if kr.CurrentID() != KeyID(k) {
				t.Fatal("loaded a different key")
			}
		})
	}
	t.Run("a directory in place of the key file is refused", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "master.key")
		if err := os.Mkdir(path, 0o700); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenKeyFile(path); !errors.Is(err, ErrInsecureKeyFile) {
			t.Fatalf("got %v, want ErrInsecureKeyFile", err)
		}
	})
}

func TestKeyFileFormats(t *testing.T) {
	k1, _ := GenerateKey()
	k2, _ := GenerateKey()
	for _, tc := range []struct {
		name    string
		content []byte
		wantIDs []string
		wantErr string
	}{
		{"one base64 key per line, first one current", []byte(EncodeKey(k1) + "\n" + EncodeKey(k2) + "\n"), []string{KeyID(k1), KeyID(k2)}, ""},
		{"exactly 32 raw bytes are one key", k1, []string{KeyID(k1)}, ""},
		{"a repeated key counts once", []byte(EncodeKey(k1) + "\n" + EncodeKey(k1)), []string{KeyID(k1)}, ""},
		{"an empty file is refused", nil, nil, "no master key"},
		{"text that is not base64 is refused", []byte("not-a-key!\n"), nil, "not base64"},
		{"a 16-byte key is refused", []byte(EncodeKey(k1[:16])), nil, "decodes to 16 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "master.key")
			if err := os.WriteFile(path, tc.content, 0o600); err != nil {
				t.Fatal(err)
			}
			kr, err := OpenKeyFile(path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := kr.IDs(); strings.Join(got, ",") != strings.Join(tc.wantIDs, ",") {
				t.Fatalf("ids %v, want %v", got, tc.wantIDs)
			}
		})
	}
}

func TestEnvironmentKeyOverridesTheKeyFile(t *testing.T) {
	k1, _ := GenerateKey()
	k2, _ := GenerateKey()
	t.Run("one key in the environment is used and no file is made", func(t *testing.T) {
		dir := t.TempDir()
		t.Setenv(EnvMasterKey, EncodeKey(k1))
		kr, err := LoadKeyring(dir)
		if err != nil {
			t.Fatal(err)
		}
		if kr.CurrentID() != KeyID(k1) || !kr.FromEnv() || kr.Path() != "" {
			t.Fatalf("id %s fromEnv %v path %q", kr.CurrentID(), kr.FromEnv(), kr.Path())
		}
		if _, err := os.Stat(KeyFile(dir)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("key file made despite the environment: %v", err)
		}
	})
	t.Run("the environment wins over an existing key file", func(t *testing.T) {
		dir := t.TempDir()
		t.Setenv(EnvMasterKey, "")
		fileKr, err := LoadKeyring(dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Setenv(EnvMasterKey, EncodeKey(k1))
		kr, err := LoadKeyring(dir)
		if err != nil {
			t.Fatal(err)
		}
		if kr.CurrentID() == fileKr.CurrentID() || kr.CurrentID() != KeyID(k1) {
			t.Fatal("the key file was used although the environment names a key")
		}
	})
	t.Run("a list in the environment seals with the first key and opens with all", func(t *testing.T) {
		t.Setenv(EnvMasterKey, " "+EncodeKey(k2)+", "+EncodeKey(k1)+"\n")
		kr, err := LoadKeyring(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if got := kr.IDs(); len(got) != 2 || got[0] != KeyID(k2) || got[1] != KeyID(k1) {
			t.Fatalf("ids %v", got)
		}
		old, _ := NewKeyring(k1)
		s := mustSeal(t, NewCodec(old), "a", "b", map[string][]byte{"k": []byte("v")})
		if _, err := NewCodec(kr).Open("a", "b", s); err != nil {
			t.Fatalf("second key does not open: %v", err)
		}
	})
	t.Run("url-safe base64 without padding is accepted", func(t *testing.T) {
		t.Setenv(EnvMasterKey, strings.TrimRight(strings.NewReplacer("+", "-", "/", "_").Replace(EncodeKey(k1)), "="))
		kr, err := LoadKeyring(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if kr.CurrentID() != KeyID(k1) {
			t.Fatal("wrong key")
		}
	})
	t.Run("a malformed environment key is an error, not a fallback to the file", func(t *testing.T) {
		t.Setenv(EnvMasterKey, "c2hvcnQ=")
		if _, err := LoadKeyring(t.TempDir()); err == nil || !strings.Contains(err.Error(), EnvMasterKey) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestKeyIDsDoNotRevealTheKey(t *testing.T) {
	k, _ := GenerateKey()
	id := KeyID(k)
	if len(id) != 16 {
		t.Fatalf("id %q is not 16 hex digits", id)
	}
	if strings.Contains(EncodeKey(k), id) || strings.Contains(string(k), id) {
		t.Fatal("id is part of the key")
	}
	k2 := append([]byte(nil), k...)
	k2[31] ^= 1
	if KeyID(k2) == id {
		t.Fatal("different keys have the same id")
	}
}
