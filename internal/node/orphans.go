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
	shims := shimsIn(procs, address)
	for _, pid := range shims {
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
	return len(shims), errors.Join(errs...)
}

// Shims lists the processes of the containerd shims serving the
// containerd at address.
func Shims(address string) ([]int, error) {
	procs, err := listProcs()
	if err != nil {
		return nil, err
	}
	return shimsIn(procs, address), nil
}

func shimsIn(procs map[int]proc, address string) []int {
	var out []int
	for pid, p := range procs {
		if isShimOf(p.argv, address) {
			out = append(out, pid)
		}
	}
	return out
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
		_, ppid, err := procStat(pid)
		if err != nil {
			// Gone meanwhile, or a line it cannot parse: skipped.
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) || errors.Is(err, errBadStat) {
				continue
			}
			return nil, fmt.Errorf("read process %d: %w", pid, err)
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

var errBadStat = errors.New("malformed stat line")

// procStat reads the state letter and the parent of process pid from
// /proc/PID/stat.
func procStat(pid int) (state byte, ppid int, err error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, err
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: no command name: %w", pid, errBadStat)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: no state and parent: %w", pid, errBadStat)
	}
	if ppid, err = strconv.Atoi(f[1]); err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: parent %q: %w", pid, f[1], errBadStat)
	}
	return f[0][0], ppid, nil
}
