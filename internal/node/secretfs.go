package node

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// tmpfsMagic is statfs(2)'s f_type of a tmpfs.
const tmpfsMagic = 0x01021994

// secretFS makes dir a tmpfs, so that the secret files the agent writes
// for instances live in memory only, as Kubernetes keeps secret volumes.
// /run is a tmpfs on most hosts, but not on all: on one where it is not,
// the files would reach the disk. A dir already on a tmpfs is left as it
// is; otherwise whatever an earlier start left in it is removed (it was
// on disk) and a tmpfs is mounted there, private to root.
func secretFS(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("secret files: %w", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("secret files: statfs %s: %w", dir, err)
	}
	if st.Type == tmpfsMagic {
		return nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("secret files: clear %s, which is not on a tmpfs: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("secret files: %w", err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0700,size=64m"); err != nil {
		return fmt.Errorf("secret files: mount a tmpfs on %s (it is on a disk, and secret values must not be): %w", dir, err)
	}
	return nil
}

// unmountSecretFS undoes secretFS's mount, if it made one.
func unmountSecretFS(dir string) error {
	err := unix.Unmount(dir, unix.MNT_DETACH)
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil // not a mount point: /run was a tmpfs already
	}
	return fmt.Errorf("unmount the secret files' tmpfs %s: %w", dir, err)
}
