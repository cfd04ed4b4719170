package clusterslot

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

func TestClaim(t *testing.T) {
	if err := os.MkdirAll(Dir, 0o755); err != nil {
		t.Skipf("cannot create %s (needs root): %v", Dir, err)
	}
	t.Run("two claims from the same start get different numbers, held until released", func(t *testing.T) {
		a, releaseA, err := Claim(7)
		if err != nil {
			t.Fatal(err)
		}
		b, releaseB, err := Claim(7)
		if err != nil {
			releaseA()
			t.Fatal(err)
		}
		defer releaseB()
		if a == b {
			t.Fatalf("both claims got %d", a)
		}
		lock := filepath.Join(Dir, strconv.Itoa(a))
		if got, err := os.ReadFile(lock); err != nil || string(got) != strconv.Itoa(os.Getpid())+"\n" {
			t.Fatalf("lock file %s = %q, %v; want this process's pid", lock, got, err)
		}
		releaseA()
		if _, err := os.Stat(lock); !os.IsNotExist(err) {
			t.Fatalf("lock file %s still there after release: %v", lock, err)
		}
	})
	t.Run("a number held by a dead process is taken over", func(t *testing.T) {
		n, release, err := Claim(11)
		if err != nil {
			t.Fatal(err)
		}
		release()
		// A pid that cannot be alive: above the kernel's maximum.
		if err := os.WriteFile(filepath.Join(Dir, strconv.Itoa(n)), []byte("99999999\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		got, release, err := Claim(11)
		if err != nil {
			t.Fatal(err)
		}
		defer release()
		if got != n {
			t.Fatalf("got %d, want the stale %d", got, n)
		}
	})
}

func TestPort(t *testing.T) {
	if err := os.MkdirAll(Dir, 0o755); err != nil {
		t.Skipf("cannot create %s (needs root): %v", Dir, err)
	}
	t.Run("a cluster's ports are fixed, distinct and below the ephemeral range", func(t *testing.T) {
		// Claimed, so that no cluster of a parallel test listens there.
		n, release, err := Claim(13)
		if err != nil {
			t.Fatal(err)
		}
		defer release()
		seen := map[string]bool{}
		for i := 0; i < 8; i++ {
			addr, err := Port(n, i)
			if err != nil {
				t.Fatal(err)
			}
			if want := "127.0.0.1:" + strconv.Itoa(21000+8*n+i); addr != want {
				t.Fatalf("Port(%d, %d) = %s, want %s", n, i, addr, want)
			}
			if seen[addr] {
				t.Fatalf("%s handed out twice", addr)
			}
			seen[addr] = true
		}
	})
}
