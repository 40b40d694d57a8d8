package sink

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// logicalBlockSize returns a block device's logical block size
// (BLKSSZGET), 512 when the device does not say.
func logicalBlockSize(f *os.File) int64 {
	rc, err := f.SyscallConn()
	if err != nil {
		return 512
	}
	size := 0 // stays 0 when the ioctl fails
	rc.Control(func(fd uintptr) {
		size, _ = unix.IoctlGetInt(int(fd), unix.BLKSSZGET)
	})
	if size < 512 || size&(size-1) != 0 {
		return 512
	}
	return int64(size)
}

// blkZeroOut zeroes n bytes at off of the block device fd (BLKZEROOUT; off
// and n multiples of the logical block size). The kernel uses the device's
// write-zeroes command when it has one and writes zero pages otherwise, and
// drops the page cache over the range.
func blkZeroOut(fd uintptr, off, n int64) error {
	r := [2]uint64{uint64(off), uint64(n)}
	_, _, e := unix.Syscall(unix.SYS_IOCTL, fd, unix.BLKZEROOUT, uintptr(unsafe.Pointer(&r)))
	if e != 0 {
		return e
	}
	return nil
}
