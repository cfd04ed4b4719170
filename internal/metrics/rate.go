package metrics

// BusyShare is the share of CPU time spent busy between two reads of a
// node's cumulative counters (busy and total jiffies of /proc/stat). ok
// is false when there is none to take: no earlier read (prevTotal is 0),
// no time counted between the reads, or a counter that went back (a
// reboot, a counter reset), whose difference would wrap around to a huge
// one.
func BusyShare(prevBusy, prevTotal, busy, total uint64) (share float64, ok bool) {
	if prevTotal == 0 || total <= prevTotal || busy < prevBusy || busy-prevBusy > total-prevTotal {
		return 0, false
	}
	return float64(busy-prevBusy) / float64(total-prevTotal), true
}
