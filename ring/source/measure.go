package source

import (
	"io"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// dataSize counts the bytes of a regular file of the given size that are
// not holes, with SEEK_DATA/SEEK_HOLE, and leaves the file offset at 0. A
// file system that does not know holes reports one data extent: size.
func dataSize(f *os.File, size int64) int64 {
	rc, err := f.SyscallConn()
	if err != nil {
		return size
	}
	data := int64(0)
	failed := false
	rc.Control(func(fd uintptr) {
		for off := int64(0); off < size; {
			start, err := unix.Seek(int(fd), off, unix.SEEK_DATA)
			if err == unix.ENXIO {
				break // only a hole from off to the end
			}
			if err != nil {
				failed = true
				return
			}
			end, err := unix.Seek(int(fd), start, unix.SEEK_HOLE)
			if err != nil {
				failed = true
				return
			}
			data += end - start
			off = end
		}
	})
	if _, err := f.Seek(0, io.SeekStart); err != nil || failed {
		return size
	}
	return min(data, size)
}

// deviceSize returns a block device's size in bytes (BLKGETSIZE64).
func deviceSize(f *os.File) (int64, error) {
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
