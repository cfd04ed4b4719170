package network

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ensureNetNS makes path a bind mount of a network namespace, creating a
// new namespace unless path already is one. It reports whether it created
// one, with its loopback interface up.
//
// A named (bind-mounted) namespace lives until it is unmounted, whatever
// happens to the processes inside it; that is what lets an instance keep
// its interface and IP while its container is restarted.
func ensureNetNS(path string) (bool, error) {
	if ns.IsNSorErr(path) == nil {
		return false, nil
	}
	// The mount point must be a file. It may be left over from a crash
	// between creating it and mounting onto it, which is fine to reuse.
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o444)
	if err != nil {
		return false, fmt.Errorf("create netns mount point: %w", err)
	}
	f.Close()

	errc := make(chan error, 1)
	go func() {
		// The thread is never unlocked: once it has unshared its network
		// namespace it must not run other goroutines, and a goroutine that
		// exits while locked takes its thread with it.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare netns: %w", err)
			return
		}
		// What the loopback CNI plugin would do, without a process.
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		if err != nil {
			errc <- fmt.Errorf("bring up lo in new netns: %w", err)
			return
		}
		// No IPv6 on the interfaces made from now on (eth0): Gantry
		// gives instances no IPv6 address and filters only IPv4 between
		// namespaces, so a link-local fe80:: address would reach another
		// namespace's instance on the bridge past the isolation rules.
		// lo, made with the namespace, keeps ::1. (Without IPv6 in the
		// kernel there is no such file, and nothing to turn off.)
		if err := os.WriteFile("/proc/sys/net/ipv6/conf/default/disable_ipv6", []byte("1"), 0); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errc <- fmt.Errorf("turn off IPv6 in new netns: %w", err)
			return
		}
		// Instances lack CAP_NET_RAW (see runtime.DefaultCapabilities), so
		// ping works only with ICMP datagram sockets, which the kernel
		// allows to the groups in this range: all of them, as Docker and
		// containerd's CRI set it.
		if err := os.WriteFile("/proc/sys/net/ipv4/ping_group_range", []byte("0 2147483647"), 0); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errc <- fmt.Errorf("allow ICMP datagram sockets in new netns: %w", err)
			return
		}
		src := fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
		if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("bind-mount netns to %s: %w", path, err)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		os.Remove(path)
		return false, err
	}
	return true, nil
}

// removeNetNS unmounts and deletes a named namespace. A path that is
// missing or not mounted is not an error: teardown runs after crashes.
func removeNetNS(path string) error {
	// MNT_DETACH: a process still holding the namespace (a container being
	// killed) must not make the unmount fail; the namespace goes when its
	// last user does.
	err := unix.Unmount(path, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount netns %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove netns %s: %w", path, err)
	}
	return nil
}
