package source

import (
	"io"
	"os"

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
