// Package blockdev holds the block-device ioctls that both ends of the ring
// need.
package blockdev

import (
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
