// Package logfile stores and reads container logs.
//
// A container's stdout and stderr become one file of JSON lines, one
// record per line of output:
//
//	{"t":"2025-01-02T03:04:05.123456789Z","s":"stdout","log":"hello"}
//
// Lines longer than MaxLineSize are cut into several records; every record
// but the last of such a line carries "p":true (partial), and every one but
// the first "c":true (continued), so that a reader that starts inside the
// log can tell the rest of a line from a line (in logs written before
// the "c" mark, a record after a "p" one of its stream is such a rest).
// The file is
// rotated by size and a fixed number of files is kept: path, path.1,
// path.2 … where a higher number is older.
//
// The package owns three things: the Writer that appends records and
// rotates, the Reader that reads them back (since a time, the last N, and
// following across rotations), and RunDriver, the entry point of the
// binary log driver that containerd's shim starts for every task. The
// driver runs outside the agent, as a child of the shim, so logs keep
// flowing while the agent restarts.
//
// It must not know about containerd's API or Gantry's objects: the runtime
// package decides where a container's log lives and passes a DriverConfig.
package logfile
