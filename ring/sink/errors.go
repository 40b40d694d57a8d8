package sink

import (
	"errors"
	"fmt"
	"syscall"
)

var (
	// ErrClosed is returned by a sink used after Close.
	ErrClosed = errors.New("sink already closed")
	// ErrAborted is returned by Close after Abort.
	ErrAborted = errors.New("sink aborted")
)

// OffsetError is a failed operation on an output, with the stream offset at
// which it failed. It unwraps to the cause (often a syscall.Errno), so
// errors.Is(err, syscall.ENOSPC) works.
type OffsetError struct {
	// Op is what failed: "write", "zero", "truncate", "sync" or "close".
	Op string
	// Path is the output ("standard output" for "-").
	Path string
	// Offset is the stream offset where the operation failed; -1 when it
	// does not apply.
	Offset int64
	// Err is the cause.
	Err error
}

func (e *OffsetError) Error() string {
	var s string
	if e.Offset >= 0 {
		s = fmt.Sprintf("%s %s at offset %d: %v", e.Op, e.Path, e.Offset, e.Err)
	} else {
		s = fmt.Sprintf("%s %s: %v", e.Op, e.Path, e.Err)
	}
	var pe *pastEndError
	switch {
	case errors.As(e.Err, &pe):
		// The message says it already.
	case errors.Is(e.Err, syscall.ENOSPC):
		s += " (the file system is full: free space on this node, or write to a larger file system or a device)"
	case errors.Is(e.Err, syscall.EDQUOT):
		s += " (disk quota exceeded: raise the quota, or write elsewhere)"
	case errors.Is(e.Err, syscall.EROFS):
		s += " (read-only file system: remount it read-write, or write elsewhere)"
	}
	return s
}

func (e *OffsetError) Unwrap() error { return e.Err }

// pastEndError is a write beyond the end of a block device. It is an
// ENOSPC, as the kernel would report it.
type pastEndError struct {
	size int64
}

func (e *pastEndError) Error() string {
	return fmt.Sprintf("the stream goes past the end of the device (%d bytes): the image is larger than the target", e.size)
}

func (e *pastEndError) Is(target error) bool { return target == syscall.ENOSPC }
