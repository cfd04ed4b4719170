package node

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// killOrphanShims ends the containerd shims that still serve address once
// its containerd is gone, with everything they started (the binary log
// driver, a container's processes), and returns how many shims it found.
//
// containerd loses track of a shim whose task it was creating when it
// stopped: at its next start it deletes the half-made bundle but not the
// shim, which then holds the log driver's pipes open and waits forever.
// Down removes every container containerd knows of first; a shim left
// after that, with containerd stopped, belongs to nothing.
func killOrphanShims(address string) (int, error) {
	procs, err := listProcs()
	if err != nil {
		return 0, err
	}
	children := map[int][]int{}
	for pid, p := range procs {
		children[p.ppid] = append(children[p.ppid], pid)
	}
	var errs []error
	found := 0
	for pid, p := range procs {
		if !isShimOf(p.argv, address) {
			continue
		}
		found++
		// Children first: a shim is their subreaper, and once it is gone
		// they would be reparented and harder to find.
		for _, c := range descendants(children, pid) {
			if err := syscall.Kill(c, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				errs = append(errs, fmt.Errorf("kill process %d of orphaned shim %d: %w", c, pid, err))
			}
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("kill orphaned shim %d: %w", pid, err))
		}
	}
	return found, errors.Join(errs...)
}

// isShimOf reports whether argv is a containerd shim's serving address.
func isShimOf(argv []string, address string) bool {
	if len(argv) == 0 || !strings.HasPrefix(filepath.Base(argv[0]), "containerd-shim") {
		return false
	}
	for i := 1; i+1 < len(argv); i++ {
		if argv[i] == "-address" && argv[i+1] == address {
			return true
		}
	}
	return false
}

// descendants lists the processes below pid, deepest last.
func descendants(children map[int][]int, pid int) []int {
	var out []int
	queue := []int{pid}
	seen := map[int]bool{pid: true}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
				queue = append(queue, c)
			}
		}
	}
	return out
}

type proc struct {
	ppid int
	argv []string
}

// listProcs reads the parent and command line of every process; ones
// that exit while it reads are skipped.
func listProcs() (map[int]proc, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	out := map[int]proc{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
				continue
			}
			return nil, fmt.Errorf("read process %d: %w", pid, err)
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, err := strconv.Atoi(f[1])
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		argv := strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
		out[pid] = proc{ppid: ppid, argv: argv}
	}
	return out, nil
}
