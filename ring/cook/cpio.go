package cook

// cpio archives are read by the small streaming reader below, not by a
// library. The two Go libraries that were candidates both fall short:
//
//   - github.com/u-root/u-root/pkg/cpio (v0.16.0, one of the project's chosen
//     libraries) reads only "newc" (070701): no crc (070702) nor odc
//     (070707); its reader wants an io.ReaderAt (it wraps a stream in a
//     forward-only discarder) and allocates the header's name length
//     unchecked. The tests use its writer to make newc archives.
//   - github.com/cavaliergopher/cpio (v1.0.1) reads newc and crc but not
//     odc, drops the device numbers (no char/block nodes), does not check the
//     crc sums, and its writer shares the magic between calls.
//
// The three formats are a fixed header of ASCII numbers, the name, the data;
// reading them is less code than adapting either library.

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

const (
	cpioTrailer   = "TRAILER!!!"
	cpioMaxName   = 64 << 10 // longer names are garbage (PATH_MAX is 4096)
	cpioMaxTarget = 64 << 10 // symlink targets likewise
	newcHdrLen    = 110
	odcHdrLen     = 76
)

// cpioHeader is one decoded cpio header.
type cpioHeader struct {
	format string // "newc", "crc" or "odc"
	ino    uint64
	mode   uint32
	uid    int
	gid    int
	nlink  uint64
	mtime  int64
	size   int64
	dev    uint64 // devmajor<<32 | devminor (newc) or dev (odc): for hard links
	rmajor uint32
	rminor uint32
	check  uint32
	name   string
}

// cpioReader reads cpio records from a stream.
type cpioReader struct {
	r   *bufio.Reader
	off int64 // bytes consumed, for the 4-byte alignment of newc
}

func (c *cpioReader) read(p []byte) error {
	n, err := io.ReadFull(c.r, p)
	c.off += int64(n)
	if err == io.EOF && n == 0 {
		return io.ErrUnexpectedEOF
	}
	return err
}

func (c *cpioReader) skip(n int64) error {
	m, err := io.CopyN(io.Discard, c.r, n)
	c.off += m
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// align skips newc's padding to a multiple of 4 bytes.
func (c *cpioReader) align() error {
	if pad := (4 - c.off%4) % 4; pad > 0 {
		return c.skip(pad)
	}
	return nil
}

// next reads the next header, the trailer's included.
func (c *cpioReader) next() (*cpioHeader, error) {
	var magic [6]byte
	if err := c.read(magic[:]); err != nil {
		return nil, err
	}
	h := &cpioHeader{}
	switch string(magic[:]) {
	case "070701", "070702":
		h.format = "newc"
		if magic[5] == '2' {
			h.format = "crc"
		}
		var b [newcHdrLen - 6]byte
		if err := c.read(b[:]); err != nil {
			return nil, err
		}
		f := make([]uint64, 13)
		for i := range f {
			v, err := strconv.ParseUint(string(b[8*i:8*i+8]), 16, 32)
			if err != nil {
				return nil, fmt.Errorf("cpio %s header: field %d: %q is not hex", h.format, i, b[8*i:8*i+8])
			}
			f[i] = v
		}
		h.ino, h.mode, h.uid, h.gid, h.nlink = f[0], uint32(f[1]), int(f[2]), int(f[3]), f[4]
		h.mtime, h.size = int64(f[5]), int64(f[6])
		h.dev = f[7]<<32 | f[8]
		h.rmajor, h.rminor = uint32(f[9]), uint32(f[10])
		h.check = uint32(f[12])
		if err := c.readName(h, f[11]); err != nil {
			return nil, err
		}
		if err := c.align(); err != nil {
			return nil, err
		}
	case "070707":
		h.format = "odc"
		var b [odcHdrLen - 6]byte
		if err := c.read(b[:]); err != nil {
			return nil, err
		}
		// dev ino mode uid gid nlink rdev: 6 digits; mtime 11; namesize 6;
		// filesize 11.
		widths := []int{6, 6, 6, 6, 6, 6, 6, 11, 6, 11}
		f := make([]uint64, len(widths))
		pos := 0
		for i, w := range widths {
			v, err := strconv.ParseUint(string(b[pos:pos+w]), 8, 64)
			if err != nil {
				return nil, fmt.Errorf("cpio odc header: field %d: %q is not octal", i, b[pos:pos+w])
			}
			f[i] = v
			pos += w
		}
		h.dev, h.ino, h.mode, h.uid, h.gid, h.nlink = f[0], f[1], uint32(f[2]), int(f[3]), int(f[4]), f[5]
		h.rmajor, h.rminor = unix.Major(f[6]), unix.Minor(f[6])
		h.mtime, h.size = int64(f[7]), int64(f[9])
		if err := c.readName(h, f[8]); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("cpio: bad magic %q at offset %d (want 070701, 070702 or 070707)", magic[:], c.off-6)
	}
	return h, nil
}

func (c *cpioReader) readName(h *cpioHeader, n uint64) error {
	if n == 0 || n > cpioMaxName {
		return fmt.Errorf("cpio %s header: name length %d", h.format, n)
	}
	b := make([]byte, n)
	if err := c.read(b); err != nil {
		return err
	}
	if b[n-1] != 0 {
		return fmt.Errorf("cpio %s header: name not NUL-terminated", h.format)
	}
	h.name = string(b[:n-1])
	return nil
}

// skipPadding skips the zero bytes between concatenated archives and
// reports whether another archive follows; anything else after a trailer
// is ignored, as cpio(1) ignores it.
func (c *cpioReader) skipPadding() (bool, error) {
	for {
		b, err := c.r.Peek(1)
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if b[0] != 0 {
			m, err := c.r.Peek(6)
			if err != nil && err != io.EOF {
				return false, err
			}
			s := string(m)
			return s == "070701" || s == "070702" || s == "070707", nil
		}
		if _, err := c.r.ReadByte(); err != nil {
			return false, err
		}
		c.off++
	}
}

// crcReader sums the bytes read through it, as the crc format's check
// field does.
type crcReader struct {
	r   io.Reader
	n   int64
	sum uint32
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	for _, b := range p[:n] {
		c.sum += uint32(b)
	}
	return n, err
}

// linkKey identifies an inode across a cpio archive's hard links.
type linkKey struct{ dev, ino uint64 }

// cpio unpacks cpio archives (newc, crc, odc; several in a row) from r
// under the root.
func (x *extractor) cpio(r io.Reader) error {
	c := &cpioReader{r: bufio.NewReaderSize(r, 64<<10)}
	links := map[linkKey]string{}
	last := ""
	for {
		h, err := c.next()
		if err != nil {
			if last != "" {
				return fmt.Errorf("cpio: after entry %q: %w", last, err)
			}
			return fmt.Errorf("cpio: %w", err)
		}
		if h.name == cpioTrailer {
			more, err := c.skipPadding()
			if err != nil {
				return fmt.Errorf("cpio: after the trailer: %w", err)
			}
			if !more {
				if _, err := io.Copy(io.Discard, c.r); err != nil {
					return fmt.Errorf("cpio: after the trailer: %w", err)
				}
				break
			}
			links = map[linkKey]string{}
			continue
		}
		last = h.name
		if err := x.cpioEntry(c, h, links); err != nil {
			return fmt.Errorf("cpio entry %q: %w", h.name, err)
		}
	}
	return x.finish()
}

// cpioEntry applies one record and consumes its data and padding.
func (x *extractor) cpioEntry(c *cpioReader, h *cpioHeader, links map[linkKey]string) error {
	body := &crcReader{r: io.LimitReader(c.r, h.size)}
	e := &entry{
		name:  h.name,
		mode:  h.mode & 0o7777,
		uid:   h.uid,
		gid:   h.gid,
		mtime: time.Unix(h.mtime, 0),
		major: h.rmajor,
		minor: h.rminor,
	}
	skip := false
	switch h.mode & unix.S_IFMT {
	case unix.S_IFREG:
		e.typ = typeFile
		e.body, e.size = body, h.size
		if h.nlink > 1 {
			k := linkKey{h.dev, h.ino}
			if first, ok := links[k]; ok {
				e.typ = typeHardlink
				e.linkname = first
			} else {
				links[k] = h.name
			}
		}
	case unix.S_IFDIR:
		e.typ = typeDir
	case unix.S_IFLNK:
		if h.size <= 0 || h.size > cpioMaxTarget {
			return fmt.Errorf("symlink target length %d", h.size)
		}
		b := make([]byte, h.size)
		if _, err := io.ReadFull(body, b); err != nil {
			return fmt.Errorf("symlink target: %w", err)
		}
		e.typ = typeSymlink
		e.linkname = string(b)
	case unix.S_IFCHR:
		e.typ = typeChar
	case unix.S_IFBLK:
		e.typ = typeBlock
	case unix.S_IFIFO:
		e.typ = typeFifo
	default:
		x.logf("cook: cpio entry %q: skipping entry of mode %#o", h.name, h.mode)
		skip = true
	}
	if !skip {
		if err := x.apply(e); err != nil {
			return err
		}
	}
	// Whatever the entry did not read (a directory's or device's stray
	// data), then the padding.
	if _, err := io.Copy(io.Discard, body); err != nil {
		return err
	}
	if body.n != h.size {
		return fmt.Errorf("data: %w (%d of %d bytes)", io.ErrUnexpectedEOF, body.n, h.size)
	}
	c.off += h.size
	if h.format == "crc" && h.mode&unix.S_IFMT == unix.S_IFREG && body.sum != h.check {
		return fmt.Errorf("crc mismatch: data sums to %#x, header says %#x", body.sum, h.check)
	}
	if h.format != "odc" {
		return c.align()
	}
	return nil
}
