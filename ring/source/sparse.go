package source

import (
	"errors"
	"fmt"
	"io"

	"golang.org/x/sys/unix"
)

// MaxHole is the longest hole SparseReader.Next reports at once: a
// quarter of what a Hole frame can stand for (its length is a uint32),
// so that a node's progress moves in steps it can report.
const MaxHole = 1 << 30

// Extent says what the input file holds at off, found with
// SEEK_DATA/SEEK_HOLE (lseek(2)) without reading: a hole (reads as zeros)
// or data, and how many bytes of it from off to the next change or the
// file's end. length is 0 at or past the end. It is safe to call from any
// goroutine: it does not use the file offset (reads are preads), and a
// file system that does not track holes reports all of it as data.
func (s *Source) Extent(off int64) (hole bool, length int64, err error) {
	if s.file == nil {
		return false, 0, fmt.Errorf("%s: not a regular file: its holes cannot be found", s.name)
	}
	rc, err := s.file.SyscallConn()
	if err != nil {
		return false, 0, err
	}
	var data, end int64
	var serr error
	cerr := rc.Control(func(fd uintptr) {
		data, serr = unix.Seek(int(fd), off, unix.SEEK_DATA)
		if errors.Is(serr, unix.ENXIO) {
			// No data from off on: a hole to the end, or off is past
			// the end.
			var st unix.Stat_t
			if serr = unix.Fstat(int(fd), &st); serr == nil {
				data, end = st.Size, st.Size
			}
			return
		}
		if serr == nil && data == off {
			end, serr = unix.Seek(int(fd), off, unix.SEEK_HOLE)
		}
	})
	switch {
	case cerr != nil:
		return false, 0, cerr
	case serr != nil:
		return false, 0, fmt.Errorf("find the data of %s at offset %d: %w", s.name, off, serr)
	case data > off:
		return true, data - off, nil
	case end > off:
		return false, end - off, nil
	}
	return false, 0, nil
}

// Sparse returns a reader of the stream that finds the holes of a regular
// file without reading them, or nil when the stream is not a regular
// file's bytes as they are (a device, a pipe, compressed on the fly,
// directory trees, split inputs).
func (s *Source) Sparse() *SparseReader {
	if s.file == nil || s.ra == nil {
		return nil
	}
	return &SparseReader{src: s}
}

// SparseReader reads a regular file from its start: data extents with
// pread, holes reported by their length. It does not use the file offset.
type SparseReader struct {
	src     *Source
	off     int64
	dataEnd int64 // the end of the data extent off is in (off < dataEnd)
}

// Next reads the file at the reader's offset and moves on. Where a hole
// starts that is at least as long as p, or runs to the end of the file,
// it returns no data and the hole's length (up to MaxHole): the caller
// sends it without reading it. Otherwise it fills p with the file's bytes
// as a plain read would (n bytes, fewer only at the end): data extents
// read with pread, shorter holes between them cleared, not read, so that
// a file of many small extents still goes in whole chunks. It returns
// io.EOF at the end of the file, with n == 0 and hole == 0. The caller
// still looks for zeros in what it gets (data extents may hold zero
// blocks too).
func (r *SparseReader) Next(p []byte) (n int, hole int64, err error) {
	for n < len(p) {
		if r.off >= r.dataEnd {
			isHole, length, err := r.src.Extent(r.off)
			switch {
			case err != nil:
				return n, 0, err
			case length == 0:
				if n == 0 {
					return 0, 0, io.EOF
				}
				return n, 0, nil
			case isHole && n == 0 && (length >= int64(len(p)) || r.atEnd(r.off+length)):
				hole = min(length, MaxHole)
				r.off += hole
				return 0, hole, nil
			case isHole:
				k := int(min(int64(len(p)-n), length))
				clear(p[n : n+k])
				n += k
				r.off += int64(k)
				continue
			}
			r.dataEnd = r.off + length
		}
		k := int(min(int64(len(p)-n), r.dataEnd-r.off))
		got, err := r.src.ra.ReadAt(p[n:n+k], r.off)
		n += got
		r.off += int64(got)
		if errors.Is(err, io.EOF) {
			// The file shrank while it was read: the next Extent
			// finds the end.
			r.dataEnd = r.off
			continue
		}
		if err != nil {
			return n, 0, err
		}
	}
	return n, 0, nil
}

// atEnd reports whether off is the end of the file (Extent reports
// nothing there).
func (r *SparseReader) atEnd(off int64) bool {
	_, length, err := r.src.Extent(off)
	return err == nil && length == 0
}

// Offset is where the next Next reads.
func (r *SparseReader) Offset() int64 { return r.off }
