// Package readback re-reads what a node wrote from the device that holds
// it, not from the page cache, and hashes it: read-back verification
// (herd send/serve --verify readback). A disk that returns other bytes
// than were written to it (a failing medium, a device-mapper flakey or
// error target, a loop device whose backing file changed under it) gives
// another digest than the stream's, or an error naming the offset.
//
// Reads use O_DIRECT, in large chunks aligned to the device's logical
// block size, so that every byte comes from the device. The holes of a
// regular file (SEEK_HOLE) are not read: no device holds them, they read
// as zeros, and the digest (package ring/digest) takes them as zeros,
// which costs nothing with the tree digest. A file system
// that refuses O_DIRECT gets the next best thing, said so in
// Result.Method: fsync, POSIX_FADV_DONTNEED over the file (the kernel
// drops its clean cached pages) and a buffered read.
package readback

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/herdproject/herd/ring/blockdev"
	"github.com/herdproject/herd/ring/digest"
	"golang.org/x/sys/unix"
)

// How Digest read the bytes (Result.Method).
const (
	// MethodDirect: every byte was read with O_DIRECT, from the device.
	MethodDirect = "O_DIRECT"
	// MethodDropCache: the file system refused O_DIRECT (EINVAL, as
	// tmpfs before Linux 6.6 does); the file was synced, its cached pages
	// dropped with POSIX_FADV_DONTNEED and then read through the page
	// cache. Pages the kernel keeps anyway (tmpfs has nowhere else to keep
	// them) are read from memory.
	MethodDropCache = "buffered after fsync and POSIX_FADV_DONTNEED (O_DIRECT refused)"
)

// DefaultChunkSize is the size of each read when Options.ChunkSize is 0.
const DefaultChunkSize = 4 << 20

// ErrUnsupported is wrapped by Digest for an output that is neither a
// regular file nor a block device (a pipe, a character device): there is
// nothing to read back from.
var ErrUnsupported = errors.New("neither a regular file nor a block device: nothing to read back")

// Options tune Digest. The zero value reads one file in DefaultChunkSize
// chunks.
type Options struct {
	// ChunkSize is the size of each read in bytes, rounded up to a
	// multiple of the block size; 0 means DefaultChunkSize. Two chunks are
	// in memory at a time, one being read, one being hashed; with
	// workers, one more for each.
	ChunkSize int
	// Split, when > 0, reads dolly's split output ("outfile X split
	// SIZE", sink.Options.Split): path_0, path_1, ... of Split bytes each
	// (the last one shorter), as many as size needs (at least path_0),
	// and hashes their concatenation.
	Split int64
	// Progress, when set, is called from Digest's goroutine after each
	// chunk with the number of bytes read back so far (all parts
	// together), holes included: bytes hashed, or handed to the workers.
	Progress func(done int64)
	// Digest is the algorithm; "" is digest.SHA256.
	Digest digest.Alg
	// Workers is the number of goroutines that hash the tree digest's
	// leaves (digest.Parallel) while the next chunks are read: 0 means
	// digest.Workers(). A disk that reads faster than one core hashes
	// (NVMe: several GB/s) is then read back at its own speed. SHA-256
	// is hashed by one.
	Workers int
}

// Result is what Digest read.
type Result struct {
	// Digest is the digest (Options.Digest) of the size bytes read.
	Digest []byte
	// Bytes is the number of bytes hashed: size.
	Bytes int64
	// Holes is how many of them were holes of a regular file, not read.
	Holes int64
	// Method is MethodDirect, or MethodDropCache when any file (any part
	// of a split output) had to be read through the page cache.
	Method string
	// Elapsed is how long the read-back took, the fsync included.
	Elapsed time.Duration
}

// Error is a failed read-back of one file. It unwraps to the cause (often
// a syscall.Errno: errors.Is(err, syscall.EIO) works).
type Error struct {
	// Path is the file or device (a split output's part).
	Path string
	// Offset is where in Path the read failed: the first logical block
	// that could not be read; -1 when the failure is not a read's (open,
	// fsync, the file's type).
	Offset int64
	// Err is the cause.
	Err error
}

func (e *Error) Error() string {
	if e.Offset < 0 {
		return fmt.Sprintf("read-back of %s: %v", e.Path, e.Err)
	}
	return fmt.Sprintf("read-back of %s at offset %d: %v", e.Path, e.Offset, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Digest re-reads the first size bytes of path (a regular file or a block
// device, or with opts.Split the parts of a split output) from offset 0,
// with O_DIRECT, and returns their digest (opts.Digest). It fsyncs the file first, so
// that bytes still in the page cache (an output written without fsync,
// dolly's -n) reach the device before they are read back from it.
//
// A file shorter than size, a device smaller than size and a read error
// fail it with an *Error. ctx is checked between chunks; a read the
// device does not answer is not interrupted.
func Digest(ctx context.Context, path string, size int64, opts Options) (Result, error) {
	if size < 0 {
		return Result{}, &Error{Path: path, Offset: -1, Err: fmt.Errorf("length %d unknown", size)}
	}
	start := time.Now()
	d := &digester{chunk: opts.ChunkSize, progress: opts.Progress, method: MethodDirect}
	if d.chunk <= 0 {
		d.chunk = DefaultChunkSize
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = digest.Workers()
	}
	d.h = digest.NewAsync(opts.Digest, workers)
	defer d.h.Close()
	if opts.Split <= 0 {
		if err := d.file(ctx, path, size, true); err != nil {
			return Result{}, err
		}
	} else {
		for i, off := 0, int64(0); i == 0 || off < size; i, off = i+1, off+opts.Split {
			if err := d.file(ctx, fmt.Sprintf("%s_%d", path, i), min(opts.Split, size-off), true); err != nil {
				return Result{}, err
			}
		}
	}
	return Result{Digest: d.h.Finish(nil), Bytes: size, Holes: d.holes, Method: d.method, Elapsed: time.Since(start)}, nil
}

// digester hashes the files of one Digest call in order.
type digester struct {
	h        digest.Async
	chunk    int
	progress func(int64)
	done     int64 // bytes hashed, all files
	holes    int64 // of which holes, not read
	method   string
	bufs     [][]byte // allocated on first use, kept across files
}

// errDirectRefused is read's report that the first O_DIRECT read failed
// with EINVAL before any byte was hashed: the file system accepted the
// flag at open but not the I/O.
var errDirectRefused = errors.New("O_DIRECT read refused")

// file hashes the first n bytes of path; direct false reads through the
// page cache from the start (tests of the fallback).
func (d *digester) file(ctx context.Context, path string, n int64, direct bool) error {
	f, direct, err := open(path, direct)
	if err != nil {
		return &Error{Path: path, Offset: -1, Err: err}
	}
	defer f.Close()
	align, regular, err := check(f, n)
	if err != nil {
		return &Error{Path: path, Offset: -1, Err: err}
	}
	// Whatever was written without fsync (dolly's -n, a NoSync sink)
	// goes to the device now: the read-back is of the device, and an
	// O_DIRECT read of dirty pages would otherwise only write them back
	// first, a fallback read would get them from memory.
	if err := unix.Fsync(int(f.Fd())); err != nil {
		return &Error{Path: path, Offset: -1, Err: fmt.Errorf("fsync: %w", err)}
	}
	if !direct {
		if err := buffered(f, false); err != nil {
			return &Error{Path: path, Offset: -1, Err: err}
		}
	}
	err = d.read(ctx, f, path, n, align, direct, regular)
	if errors.Is(err, errDirectRefused) {
		if err := buffered(f, true); err != nil {
			return &Error{Path: path, Offset: -1, Err: err}
		}
		direct = false
		err = d.read(ctx, f, path, n, align, false, regular)
	}
	if !direct {
		d.method = MethodDropCache
	}
	return err
}

// open opens path read-only, with O_DIRECT when direct and the file
// system takes it; the bool says whether it did. Errors are the bare
// errno: Error names the path.
func open(path string, direct bool) (*os.File, bool, error) {
	flags := unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NONBLOCK // a FIFO must not wait for a writer
	if direct {
		fd, err := unix.Open(path, flags|unix.O_DIRECT, 0)
		if err == nil {
			return os.NewFile(uintptr(fd), path), true, nil
		}
		if err != syscall.EINVAL {
			return nil, false, err
		}
	}
	fd, err := unix.Open(path, flags, 0)
	if err != nil {
		return nil, false, err
	}
	return os.NewFile(uintptr(fd), path), false, nil
}

// check returns the alignment of f's reads: the logical block size of a
// block device (which must hold n bytes), 4096 for a regular file (which
// must be n bytes long at least; every file system's O_DIRECT takes it);
// and whether f is a regular file.
func check(f *os.File, n int64) (int64, bool, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return 0, false, err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		if st.Size < n {
			return 0, false, fmt.Errorf("the file has %d bytes, %d were written", st.Size, n)
		}
		return 4096, true, nil
	case unix.S_IFBLK:
		size, err := blockdev.Size(f)
		if err != nil {
			return 0, false, fmt.Errorf("BLKGETSIZE64: %w", err)
		}
		if size < n {
			return 0, false, fmt.Errorf("the device has %d bytes, %d were written", size, n)
		}
		lbs, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKSSZGET)
		if err != nil || lbs < 512 || lbs&(lbs-1) != 0 {
			lbs = 512
		}
		return int64(lbs), false, nil
	default:
		what := typeNames[st.Mode&unix.S_IFMT]
		if what == "" {
			what = fmt.Sprintf("file type %#o", st.Mode&unix.S_IFMT)
		}
		return 0, false, fmt.Errorf("%s: %w", what, ErrUnsupported)
	}
}

// typeNames names the file types Digest cannot read back.
var typeNames = map[uint32]string{
	unix.S_IFIFO:  "a pipe (FIFO)",
	unix.S_IFCHR:  "a character device",
	unix.S_IFDIR:  "a directory",
	unix.S_IFSOCK: "a socket",
}

// buffered turns f into a page-cache reader whose cached pages were
// dropped: O_DIRECT cleared (when clear) and POSIX_FADV_DONTNEED over the
// whole file, after the caller's fsync (the kernel drops clean pages only).
func buffered(f *os.File, clear bool) error {
	fd := int(f.Fd())
	if clear {
		fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		if err == nil {
			_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl&^unix.O_DIRECT)
		}
		if err != nil {
			return fmt.Errorf("clear O_DIRECT: %w", err)
		}
	}
	if err := unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("posix_fadvise(POSIX_FADV_DONTNEED): %w", err)
	}
	return nil
}

// piece is a chunk read at off, a hole, or the error that stopped the
// reader.
type piece struct {
	buf  []byte // the bytes to hash
	hole int64  // or the length of a hole
	err  error
}

// read hashes the first n bytes of f: a goroutine reads chunk after chunk
// (aligned offsets and lengths, the last one rounded up to align and cut
// after the read) while this one hashes the one before. In a regular
// file (sparse), the holes SEEK_DATA finds are not read but hashed as
// zeros.
func (d *digester) read(ctx context.Context, f *os.File, path string, n, align int64, direct, sparse bool) error {
	if n == 0 {
		return nil
	}
	chunk := (int64(d.chunk) + align - 1) / align * align
	nbuf := 2
	if p, ok := d.h.(*digest.Parallel); ok {
		nbuf += p.Workers() // one held by each
	}
	if len(d.bufs) < nbuf || len(d.bufs[0]) < int(chunk) {
		d.bufs = make([][]byte, nbuf)
		for i := range d.bufs {
			d.bufs[i] = alignedBuf(int(chunk))
		}
	}
	free := make(chan []byte, nbuf)
	for _, b := range d.bufs {
		free <- b[:chunk]
	}
	// hashing counts the buffers the workers still hash: the next file's
	// reads must not overwrite them.
	var hashing sync.WaitGroup
	defer hashing.Wait()
	full := make(chan piece, 2)
	stop := make(chan struct{})
	go func() {
		defer close(full)
		fd := int(f.Fd())
		for off := int64(0); off < n; {
			if sparse {
				if h := holeAt(fd, off, n, align); h > 0 {
					select {
					case full <- piece{hole: h}:
					case <-stop:
						return
					}
					off += h
					continue
				}
			}
			var buf []byte
			select {
			case buf = <-free:
			case <-stop:
				return
			}
			want := min(chunk, n-off)
			if sparse {
				want = dataAt(fd, off, want, align)
			}
			got, err := readAt(fd, buf[:(want+align-1)/align*align], off)
			switch {
			case err != nil && direct && off == 0 && errors.Is(err, syscall.EINVAL):
				full <- piece{err: errDirectRefused}
				return
			case err != nil:
				full <- piece{err: &Error{Path: path, Offset: locate(fd, buf, off+int64(got), off+want, align), Err: err}}
				return
			case int64(got) < want: // end of file
				full <- piece{err: &Error{Path: path, Offset: off + int64(got), Err: fmt.Errorf("the file ends here, %d bytes were written", n)}}
				return
			}
			full <- piece{buf: buf[:want]}
			off += want
		}
	}()
	defer func() {
		close(stop)
		for range full { // the reader is done with f and the buffers
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return &Error{Path: path, Offset: -1, Err: context.Cause(ctx)}
		case p, ok := <-full:
			if !ok {
				return nil
			}
			if p.err != nil {
				return p.err
			}
			if p.hole > 0 {
				d.h.Zeros(p.hole)
			} else {
				buf := p.buf
				hashing.Add(1)
				d.h.Write(buf, func() {
					free <- buf[:cap(buf)]
					hashing.Done()
				})
			}
			d.done += p.hole + int64(len(p.buf))
			if p.hole > 0 {
				d.holes += p.hole
			}
			if d.progress != nil {
				d.progress(d.done)
			}
		}
	}
}

// holeAt returns the length of the hole of fd at off, up to n and cut to a
// multiple of align (so that the reads after it stay aligned); 0 when off
// is in data, or when the file system cannot say (then it is read).
func holeAt(fd int, off, n, align int64) int64 {
	data, err := unix.Seek(fd, off, unix.SEEK_DATA)
	switch {
	case err == unix.ENXIO: // no data after off: a hole to the end
		data = n
	case err != nil:
		return 0
	}
	h := min(data, n) - off
	if min(data, n) < n {
		h = h / align * align
	}
	return max(h, 0)
}

// dataAt cuts a read of want bytes at off, in data, where the next hole
// begins (rounded up to align), so that the hole is skipped, not read.
func dataAt(fd int, off, want, align int64) int64 {
	hole, err := unix.Seek(fd, off, unix.SEEK_HOLE)
	if err != nil || hole <= off || hole-off >= want {
		return want
	}
	return min((hole-off+align-1)/align*align, want)
}

// readAt fills buf from off, as pread does in a loop; a short count with a
// nil error is the end of the file.
func readAt(fd int, buf []byte, off int64) (int, error) {
	got := 0
	for got < len(buf) {
		k, err := unix.Pread(fd, buf[got:], off+int64(got))
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return got, err
		case k == 0:
			return got, nil
		}
		got += k
	}
	return got, nil
}

// locate returns the offset of the first block in [from, to) that cannot
// be read, block by block, so that an error names the bad place rather
// than the start of a 4 MiB chunk; from when every block reads (the
// failure was not one of a place).
func locate(fd int, buf []byte, from, to, align int64) int64 {
	for off := from / align * align; off < to; off += align {
		if _, err := readAt(fd, buf[:align], off); err != nil {
			return off
		}
	}
	return from
}

// alignedBuf returns size bytes at a page-aligned address (O_DIRECT's
// requirement for the buffer; Go's heap does not move objects).
func alignedBuf(size int) []byte {
	const page = 4096
	b := make([]byte, size+page)
	skip := (page - int(uintptr(unsafe.Pointer(&b[0]))%page)) % page
	return b[skip : skip+size : skip+size]
}
