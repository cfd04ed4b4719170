// Package clusterslot hands out the per-machine resources of a throwaway
// `gantry up` cluster, for the end-to-end tests and the benchmarks: a
// number N for its bridge (gteN) and subnet, and a block of ports. Two
// processes that start clusters at once (go test runs packages in
// parallel, a benchmark may run beside the tests) never get the same
// number: it is held by a lock file naming the process.
package clusterslot

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
)

// Dir holds the lock files, one per claimed number.
const Dir = "/run/gantry/e2e"

// count is how many numbers there are; subnets are 10.(100+N).0.0/16.
const count = 150

// Claim takes a number no live process holds and whose bridge does not
// exist, trying from start on. release gives it back.
//
// A number is held by an exclusive flock(2) on its lock file, which the
// kernel drops when the holder exits, however it exits: no stale lock to
// judge, and no moment when a lock file exists that its maker does not
// hold yet. The file names the holder's pid for people.
func Claim(start int) (n int, release func(), err error) {
	if err := os.MkdirAll(Dir, 0o755); err != nil {
		return 0, nil, err
	}
	for i := 0; i < count; i++ {
		n := (start + i*7) % count
		if _, err := os.Stat("/sys/class/net/gte" + fmt.Sprint(n)); err == nil {
			continue
		}
		f, err := os.OpenFile(filepath.Join(Dir, fmt.Sprint(n)), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return 0, nil, err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close() // held by a live process
			continue
		}
		f.Truncate(0)
		fmt.Fprintf(f, "%d\n", os.Getpid())
		return n, func() { f.Close() }, nil
	}
	return 0, nil, errors.New("no free cluster number: too many clusters on this machine")
}

// Port returns port i (0-7) of cluster number n on 127.0.0.1: a fixed
// block below the kernel's ephemeral range (32768 and up), so that no
// outgoing connection of another process can take it between now and
// when gantry up listens, or while gantry up is restarted. A port that
// something else holds is replaced by an ephemeral one.
func Port(n, i int) (string, error) {
	addr := fmt.Sprintf("127.0.0.1:%d", 21000+8*n+i)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return FreePort()
	}
	ln.Close()
	return addr, nil
}

// FreePort returns a port on 127.0.0.1 that was free a moment ago.
func FreePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
