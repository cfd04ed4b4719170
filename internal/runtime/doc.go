// Package runtime runs containers on containerd for the node agent.
//
// It owns two things. The Driver turns a ContainerSpec into a containerd
// container with Gantry's secure defaults (no new privileges, the default
// seccomp profile, a trimmed capability set without NET_RAW, masked /proc
// paths, and always a memory and pids limit), and pulls, starts, waits on,
// restarts in place, stops, removes, lists, execs into and measures those
// containers. The Daemon runs a private containerd under a data directory,
// adopts one already running there, and restarts it when it dies.
//
// Container output goes to a per-container log file through containerd's
// binary logging: the shim starts the log driver (the gantry binary run
// as `gantry __log-driver`, see logfile.RunDriver) next to the container,
// so logs do not depend on the agent being up, and a restarted agent can
// re-adopt running containers without re-attaching any IO.
//
// The package must not decide policy: whether a container may be
// privileged, which image a revision runs, and when to restart are the
// agent's and the API server's business. It knows nothing of Gantry's API
// objects beyond the error kinds of api/v1; the agent keeps an instance's
// identity in container labels.
package runtime
