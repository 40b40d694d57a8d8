// Package blockdev holds the block-device ioctls that both ends of the ring
// need.
package blockdev

import (
	"fmt"
	"io/fs"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Size returns a block device's size in bytes (BLKGETSIZE64).
func Size(f *os.File) (int64, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var size uint64
	var errno error
	if err := rc.Control(func(fd uintptr) {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, fd, unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&size)))
		if e != 0 {
			errno = e
		}
	}); err != nil {
		return 0, err
	}
	if errno != nil {
		return 0, errno
	}
	return int64(size), nil
}

// IsBlock says whether a file mode is a block device's.
func IsBlock(m fs.FileMode) bool {
	return m&fs.ModeDevice != 0 && m&fs.ModeCharDevice == 0
}

// SizeOf returns the size in bytes of path: a block device's
// (BLKGETSIZE64) or a regular file's. Anything else is an error.
func SizeOf(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", path, err)
	}
	switch {
	case fi.Mode().IsRegular():
		return fi.Size(), nil
	case IsBlock(fi.Mode()):
		n, err := Size(f)
		if err != nil {
			return 0, fmt.Errorf("size of %s: BLKGETSIZE64: %w", path, err)
		}
		return n, nil
	}
	return 0, fmt.Errorf("size of %s: %s is neither a block device nor a regular file (%s)", path, path, fi.Mode().Type())
}
