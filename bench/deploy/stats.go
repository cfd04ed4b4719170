package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// dist summarizes a sample of durations. Percentiles are nearest-rank:
// with 50 samples p99 is the largest one, p90 the 45th.
type dist struct {
	n                             int
	min, p50, p90, p99, max, mean time.Duration
}

func summarize(ds []time.Duration) dist {
	if len(ds) == 0 {
		return dist{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return dist{n: len(s), min: s[0], p50: rank(0.50), p90: rank(0.90), p99: rank(0.99), max: s[len(s)-1], mean: sum / time.Duration(len(s))}
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64)
}

// table prints rows aligned in columns; the first row is the header.
func table(w io.Writer, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t")+"\t")
	}
	tw.Flush()
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc: 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// procCPU returns a process's user+system CPU time (all its threads), from
// /proc/PID/stat. Children are not included.
func procCPU(pid int) (time.Duration, error) {
	self, _, err := procCPUWithChildren(pid)
	return self, err
}

// procCPUWithChildren returns a process's own CPU time and that of its
// children it has waited for (cutime+cstime): for gantry up, the CNI
// plugins and iptables runs; for a shim, runc.
func procCPUWithChildren(pid int) (self, children time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	return parseStatCPU(string(b))
}

// parseStatCPU reads utime, stime, cutime and cstime (fields 14 to 17) from
// a /proc/PID/stat line. The command name (field 2) may contain spaces
// and parentheses, so fields are counted from the last ')'.
func parseStatCPU(stat string) (self, children time.Duration, err error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("malformed stat line")
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime is field 14.
	if len(f) < 15 {
		return 0, 0, fmt.Errorf("malformed stat line")
	}
	var v [4]int64
	for k := range v {
		n, err := strconv.ParseInt(f[11+k], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("malformed stat line")
		}
		v[k] = n
	}
	tick := time.Second / clockTicks
	return time.Duration(v[0]+v[1]) * tick, time.Duration(v[2]+v[3]) * tick, nil
}

// procRSS returns a process's resident set size in bytes.
func procRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
			return kb << 10
		}
	}
	return 0
}

// procGroups sorts the processes that belong to one cluster into what
// they are: the gantry up process (server and agent), its containerd, the
// containerd shims, and the log drivers the shims run for each container.
func procGroups(gantryPID int, dataDir, socket string) map[string][]int {
	out := map[string][]int{"gantry up": {gantryPID}}
	var drivers []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == gantryPID {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		line := strings.Join(args, " ")
		base := filepath.Base(args[0])
		switch {
		case base == "containerd" && strings.Contains(line, dataDir):
			out["containerd"] = append(out["containerd"], pid)
		case base == "containerd-shim-runc-v2" && strings.Contains(line, socket):
			out["shims"] = append(out["shims"], pid)
		case base == "gantry-logdriver" || len(args) > 1 && args[1] == "__log-driver":
			drivers = append(drivers, pid)
		}
	}
	// A log driver is this cluster's if one of its shims runs it.
	shims := map[int]bool{}
	for _, p := range out["shims"] {
		shims[p] = true
	}
	for _, p := range drivers {
		if shims[parentPID(p)] {
			out["log drivers"] = append(out["log drivers"], p)
		}
	}
	return out
}

// parentPID returns a process's parent from /proc/PID/stat, or 0.
func parentPID(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name is in parentheses and may hold spaces: the fields
	// after the last ')' are state, then the parent's pid.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	var state string
	var ppid int
	fmt.Sscanf(string(b[i+1:]), " %s %d", &state, &ppid)
	return ppid
}

// cpuOf sums the CPU time of pids; processes that are gone count zero.
func cpuOf(pids []int) map[int]time.Duration {
	out := map[int]time.Duration{}
	for _, p := range pids {
		if d, err := procCPU(p); err == nil {
			out[p] = d
		}
	}
	return out
}

// machineCPU returns busy and total jiffies of the whole machine from
// /proc/stat, to show how loaded the shared machine was.
func machineCPU() (busy, total int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	// user nice system idle iowait irq softirq steal; guest time is
	// already counted in user.
	for i, v := range f[1:min(len(f), 9)] {
		n, _ := strconv.ParseInt(v, 10, 64)
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
