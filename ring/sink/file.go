package sink

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/herdproject/herd/ring/blockdev"
	"golang.org/x/sys/unix"
)

// zeros is the read-only source of every zero byte the sinks write.
var zeros [1 << 20]byte

// Open opens a raw output for one file's stream: "-" (opts.Stdout), a
// block device, a character device or FIFO, or a regular file (created or
// truncated). With opts.Split > 0 the stream goes to path_0, path_1, ...
// Call Check first for set-up errors that should stop a session before it
// starts; Open refuses a busy block device or one smaller than opts.Size.
func Open(path string, opts Options) (Sink, error) {
	if path == "-" {
		if opts.Split > 0 {
			return nil, errors.New("standard output cannot be split: give a file name to split into")
		}
		w := opts.Stdout
		if w == nil {
			w = os.Stdout
		}
		return &streamSink{w: w, name: stdoutName}, nil
	}
	if path == "" {
		return nil, errors.New("no output path")
	}
	if opts.Split > 0 {
		return openSplit(path, opts)
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, unix.ENOTDIR):
		return openRegular(path, opts)
	case err != nil:
		return nil, fmt.Errorf("output %s: %w", path, unwrapPath(err))
	}
	switch m := fi.Mode(); {
	case m.IsDir():
		return nil, fmt.Errorf("output %s is a directory: give a file or device to write the image to (a directory only takes an archive, with >>)", path)
	case m&fs.ModeDevice != 0 && m&fs.ModeCharDevice == 0:
		return openBlock(path, opts)
	case m&(fs.ModeCharDevice|fs.ModeNamedPipe) != 0:
		// Opening a FIFO blocks until a reader comes, as dolly does.
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return nil, fmt.Errorf("output %s: %w", path, unwrapPath(err))
		}
		return &streamSink{w: f, f: f, name: path}, nil
	case m.IsRegular():
		return openRegular(path, opts)
	default:
		return nil, fmt.Errorf("output %s is a %s, not a file or device: refusing to write", path, typeName(m))
	}
}

func openRegular(path string, opts Options) (*fileSink, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o666)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
			if derr := checkDir(filepath.Dir(path)); derr != nil {
				return nil, derr
			}
		}
		return nil, fmt.Errorf("output %s: %w", path, unwrapPath(err))
	}
	return &fileSink{path: path, f: f, regular: true, noSync: opts.NoSync}, nil
}

func openBlock(path string, opts Options) (*fileSink, error) {
	// O_EXCL: never write to a mounted or otherwise claimed device.
	f, err := os.OpenFile(path, os.O_WRONLY|unix.O_EXCL, 0)
	if err != nil {
		return nil, blockOpenError(path, err)
	}
	size, err := blockdev.Size(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("size of %s: %w", path, err)
	}
	if opts.Size >= 0 && size < opts.Size {
		f.Close()
		return nil, tooSmall(path, size, opts.Size)
	}
	return &fileSink{path: path, f: f, block: true, devSize: size, align: logicalBlockSize(f), noSync: opts.NoSync}, nil
}

// fileSink writes a stream at increasing offsets of a regular file (holes
// are skipped, so the file stays sparse) or a block device (holes are
// zeroed with BLKZEROOUT, coalesced until the next write or Close).
type fileSink struct {
	path    string
	f       *os.File
	regular bool
	block   bool
	devSize int64 // block devices: size in bytes
	align   int64 // block devices: logical block size, BLKZEROOUT's unit
	noSync  bool

	// Owned by the writer goroutine.
	pos         int64 // stream offset: bytes written and holes so far
	zeroPending int64 // block devices: zeros not yet written, ending at pos
	noZeroOut   bool  // BLKZEROOUT failed once: write zeros instead

	mu   sync.Mutex // guards the fields below, against a concurrent Abort
	done bool
	res  Result
	err  error
}

func (s *fileSink) Write(p []byte) (int, error) {
	if s.block {
		if err := s.flushZeros(); err != nil {
			return 0, err
		}
		if room := s.devSize - s.pos; int64(len(p)) > room {
			n := 0
			if room > 0 {
				var err error
				n, err = s.writeAt(p[:room], "write")
				if err != nil {
					return n, err
				}
			}
			return n, &OffsetError{Op: "write", Path: s.path, Offset: s.pos, Err: &pastEndError{s.devSize}}
		}
	}
	return s.writeAt(p, "write")
}

func (s *fileSink) writeAt(p []byte, op string) (int, error) {
	n, err := s.f.WriteAt(p, s.pos)
	s.pos += int64(n)
	if err != nil {
		return n, &OffsetError{Op: op, Path: s.path, Offset: s.pos, Err: unwrapPath(err)}
	}
	return n, nil
}

func (s *fileSink) Zero(n int64) error {
	if n < 0 {
		return fmt.Errorf("zero %s at offset %d: negative length %d", s.path, s.pos, n)
	}
	if s.block && s.pos+n > s.devSize {
		return &OffsetError{Op: "zero", Path: s.path, Offset: s.devSize, Err: &pastEndError{s.devSize}}
	}
	s.pos += n
	if s.block {
		s.zeroPending += n
	}
	return nil
}

// flushZeros zeroes the pending hole [pos-zeroPending, pos) of a block
// device: BLKZEROOUT on its middle aligned to logical blocks, written zeros
// for the unaligned head and tail, or for all of it once the ioctl has been
// refused.
func (s *fileSink) flushZeros() error {
	if s.zeroPending == 0 {
		return nil
	}
	start, end := s.pos-s.zeroPending, s.pos
	s.zeroPending = 0
	a := (start + s.align - 1) / s.align * s.align
	b := end / s.align * s.align
	if a >= b || s.noZeroOut {
		return s.writeZeros(start, end)
	}
	if err := s.zeroOut(a, b); err != nil {
		s.noZeroOut = true
		return s.writeZeros(start, end)
	}
	if err := s.writeZeros(start, a); err != nil {
		return err
	}
	return s.writeZeros(b, end)
}

// zeroOut issues BLKZEROOUT over [a, b) in pieces of at most 1 GiB.
func (s *fileSink) zeroOut(a, b int64) error {
	const piece = 1 << 30
	rc, err := s.f.SyscallConn()
	if err != nil {
		return err
	}
	for a < b {
		n := min(b-a, piece)
		var errno error
		if err := rc.Control(func(fd uintptr) {
			errno = blkZeroOut(fd, a, n)
		}); err != nil {
			return err
		}
		if errno != nil {
			return errno
		}
		a += n
	}
	return nil
}

// writeZeros writes zeros over [start, end) from the shared zero buffer.
func (s *fileSink) writeZeros(start, end int64) error {
	for off := start; off < end; {
		k := min(end-off, int64(len(zeros)))
		n, err := s.f.WriteAt(zeros[:k], off)
		off += int64(n)
		if err != nil {
			return &OffsetError{Op: "zero", Path: s.path, Offset: off, Err: unwrapPath(err)}
		}
	}
	return nil
}

func (s *fileSink) Close() (Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return s.res, s.err
	}
	s.done = true
	err := s.finish()
	if cerr := s.f.Close(); cerr != nil && err == nil {
		err = &OffsetError{Op: "close", Path: s.path, Offset: -1, Err: unwrapPath(cerr)}
	}
	s.res = Result{Bytes: s.pos}
	s.err = err
	if err != nil {
		s.res = Result{}
	}
	return s.res, s.err
}

func (s *fileSink) finish() error {
	if s.block {
		if err := s.flushZeros(); err != nil {
			return err
		}
	}
	if s.regular {
		// The final length, so that a trailing hole is part of the file.
		if err := s.f.Truncate(s.pos); err != nil {
			return &OffsetError{Op: "truncate", Path: s.path, Offset: s.pos, Err: unwrapPath(err)}
		}
	}
	if !s.noSync {
		if err := s.f.Sync(); err != nil {
			return &OffsetError{Op: "sync", Path: s.path, Offset: -1, Err: unwrapPath(err)}
		}
	}
	return nil
}

// Abort closes the output without syncing; the file stays as it is.
func (s *fileSink) Abort() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return
	}
	s.done = true
	s.err = &OffsetError{Op: "close", Path: s.path, Offset: -1, Err: ErrAborted}
	s.f.Close()
}

// streamSink writes to a pipe, a character device or standard output:
// plain writes, holes written as zeros.
type streamSink struct {
	w    interface{ Write([]byte) (int, error) }
	f    *os.File // closed at the end; nil for standard output
	name string
	pos  int64

	closed atomic.Bool // set by Close and Abort: no more writes

	mu   sync.Mutex
	done bool
	res  Result
	err  error
}

func (s *streamSink) Write(p []byte) (int, error) {
	if s.closed.Load() {
		return 0, &OffsetError{Op: "write", Path: s.name, Offset: s.pos, Err: ErrClosed}
	}
	n, err := s.w.Write(p)
	s.pos += int64(n)
	if err != nil {
		return n, &OffsetError{Op: "write", Path: s.name, Offset: s.pos, Err: unwrapPath(err)}
	}
	return n, nil
}

func (s *streamSink) Zero(n int64) error {
	if n < 0 {
		return fmt.Errorf("zero %s at offset %d: negative length %d", s.name, s.pos, n)
	}
	if s.closed.Load() {
		return &OffsetError{Op: "zero", Path: s.name, Offset: s.pos, Err: ErrClosed}
	}
	for n > 0 {
		k := min(n, int64(len(zeros)))
		w, err := s.w.Write(zeros[:k])
		s.pos += int64(w)
		n -= int64(w)
		if err != nil {
			return &OffsetError{Op: "zero", Path: s.name, Offset: s.pos, Err: unwrapPath(err)}
		}
	}
	return nil
}

func (s *streamSink) Close() (Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return s.res, s.err
	}
	s.done = true
	s.closed.Store(true)
	if s.f != nil {
		if err := s.f.Close(); err != nil {
			s.err = &OffsetError{Op: "close", Path: s.name, Offset: -1, Err: unwrapPath(err)}
			return s.res, s.err
		}
	}
	s.res = Result{Bytes: s.pos}
	return s.res, nil
}

func (s *streamSink) Abort() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return
	}
	s.done = true
	s.closed.Store(true)
	s.err = &OffsetError{Op: "close", Path: s.name, Offset: -1, Err: ErrAborted}
	if s.f != nil {
		s.f.Close()
	}
}
