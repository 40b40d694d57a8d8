package diskimage

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/herdproject/herd/ring/digest"
	"github.com/herdproject/herd/ring/sink"
	"github.com/herdproject/herd/ring/stream"
)

// Block is the granularity of data-size accounting: the ring sends every
// aligned all-zero block of this many bytes as a hole, so DataSize counts
// the bytes of the other blocks (stream.HoleBlock, 4 KiB).
const Block = stream.HoleBlock

// readBuf is the read size of scanRaw, a multiple of Block.
const readBuf = 1 << 20

// blockSink receives an image's bytes in order, as a ring node's raw
// output does: Write for data, Zero for holes and aligned all-zero blocks.
type blockSink interface {
	Write(p []byte) (int, error)
	Zero(n int64) error
}

// scanRaw reads size bytes of f and hands them to dst: the runs of
// Block-aligned blocks that hold data to Write, the holes of a sparse
// file (found with SEEK_DATA/SEEK_HOLE, never read) and the all-zero
// blocks to Zero. A file system that does not report holes is read
// whole. ctx is checked between reads.
func scanRaw(ctx context.Context, f *os.File, size int64, dst blockSink) error {
	buf := make([]byte, readBuf)
	sparse := true
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return err
		}
		end := size
		if sparse {
			ds, de, err := nextData(f, off, size)
			switch {
			case err != nil:
				// Not a file system that reports holes: read it all.
				sparse = false
			case ds > off:
				if err := dst.Zero(ds - off); err != nil {
					return err
				}
				off = ds
				continue
			default:
				end = de
			}
		}
		for off < end {
			n := int(min(int64(len(buf)), end-off))
			if _, err := f.ReadAt(buf[:n], off); err != nil {
				if errors.Is(err, io.EOF) {
					return fmt.Errorf("read %s at byte %d: it ended early (it shrank while being read?)", f.Name(), off)
				}
				return fmt.Errorf("read %s at byte %d: %w", f.Name(), off, err)
			}
			if err := segment(buf[:n], dst); err != nil {
				return err
			}
			off += int64(n)
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	return nil
}

// nextData returns the data extent at or after off, widened to Block
// boundaries: [start, end). start == size when only a hole remains.
func nextData(f *os.File, off, size int64) (start, end int64, err error) {
	const seekData, seekHole = 3, 4 // SEEK_DATA, SEEK_HOLE (lseek(2))
	ds, err := f.Seek(off, seekData)
	if errors.Is(err, syscall.ENXIO) {
		return size, size, nil
	}
	if err != nil {
		return 0, 0, err
	}
	de, err := f.Seek(ds, seekHole)
	if err != nil {
		return 0, 0, err
	}
	ds = max(off, ds/Block*Block)
	de = min(size, (de+Block-1)/Block*Block)
	if de <= ds {
		de = min(size, ds+Block)
	}
	return ds, de, nil
}

// segment passes p (starting at a Block boundary) to dst: runs of data
// blocks to Write, runs of all-zero blocks to Zero.
func segment(p []byte, dst blockSink) error {
	start, zero := 0, false
	flush := func(end int) error {
		if end == start {
			return nil
		}
		var err error
		if zero {
			err = dst.Zero(int64(end - start))
		} else {
			_, err = dst.Write(p[start:end])
		}
		start = end
		return err
	}
	for b := 0; b < len(p); b += Block {
		e := min(b+Block, len(p))
		z := stream.IsZero(p[b:e])
		if b == 0 {
			zero = z
		} else if z != zero {
			if err := flush(b); err != nil {
				return err
			}
			zero = z
		}
	}
	return flush(len(p))
}

// scanner measures an image pushed through it: its size, data size
// (bytes passed to Write), SHA-256 (when hashing) and partition table.
// It is a sink.Sink, so that a cooked decoder (package ring/cook) can
// feed it exactly as it feeds a ring node's output.
type scanner struct {
	pos, data int64
	h         digest.Hash       // SHA-256; nil: the decoder hashes
	tree      digest.Hash       // the tree digest; nil: not wanted
	hashes    digest.Concurrent // those of h and tree that are wanted

	head     []byte // the image's first HeadBytes (fewer if it is shorter)
	limit    int64  // > 0: Write and Zero return errHeadRead from this offset on
	tr       *tableReader
	tableErr error
}

// newScanner returns a scanner that computes the SHA-256 of what it is
// given when sha, its tree digest (package ring/digest) when tree.
func newScanner(sha, tree bool) *scanner {
	s := &scanner{head: make([]byte, 0, SectorSize)}
	if sha {
		s.h = digest.New(digest.SHA256)
		s.hashes = append(s.hashes, s.h)
	}
	if tree {
		s.tree = digest.New(digest.Tree)
		s.hashes = append(s.hashes, s.tree)
	}
	return s
}

// Write takes data bytes.
func (s *scanner) Write(p []byte) (int, error) {
	s.hashes.Write(p)
	s.observe(p, int64(len(p)))
	s.data += int64(len(p))
	s.pos += int64(len(p))
	return len(p), s.enough()
}

// errHeadRead stops a scan that needs only the image's head.
var errHeadRead = errors.New("read the image's head")

// enough returns errHeadRead once a limited scanner has its limit.
func (s *scanner) enough() error {
	if s.limit > 0 && s.pos >= s.limit {
		return errHeadRead
	}
	return nil
}

// Zero takes n zero bytes.
func (s *scanner) Zero(n int64) error {
	if n < 0 {
		return fmt.Errorf("negative hole length %d", n)
	}
	s.hashes.Zeros(n)
	s.observe(nil, n)
	s.pos += n
	return s.enough()
}

// observe keeps the image's head (the MBR and the GPT) and collects the
// sectors of the chain of extended boot records from the n bytes at
// s.pos (p is nil for zeros).
func (s *scanner) observe(p []byte, n int64) {
	at := func(off, k int64) []byte {
		if p == nil {
			return stream.Zeros[:k]
		}
		return p[off : off+k]
	}
	if k := min(int64(HeadBytes-len(s.head)), n); k > 0 {
		if p == nil {
			s.head = append(s.head, make([]byte, k)...)
		} else {
			s.head = append(s.head, p[:k]...)
		}
	}
	if s.tr == nil && s.tableErr == nil {
		if len(s.head) < SectorSize {
			return
		}
		s.tr, s.tableErr = newTableReader(s.head[:SectorSize])
		if s.tableErr != nil {
			return
		}
	}
	if s.tr == nil {
		return
	}
	for {
		lba, ok := s.tr.want()
		if !ok {
			return
		}
		off := int64(lba) * SectorSize
		switch {
		case off < s.pos:
			s.tr.fail(fmt.Sprintf("extended boot record at sector %d comes before the previous one: logical partitions from there on are not listed (a compressed image is read in one pass)", lba))
			return
		case off >= s.pos+n:
			return
		case off+SectorSize > s.pos+n:
			s.tr.fail(fmt.Sprintf("extended boot record at sector %d is cut off by the image's end", lba))
			return
		}
		s.tr.feed(at(off-s.pos, SectorSize))
	}
}

// table returns the partition table found, or why there is none.
func (s *scanner) table() (*Table, error) {
	if s.tableErr != nil {
		return nil, s.tableErr
	}
	if s.tr == nil {
		return nil, fmt.Errorf("%w: the image is shorter than one sector", ErrNoMBR)
	}
	if s.tr.next != 0 {
		s.tr.fail(fmt.Sprintf("extended boot record at sector %d is past the image's end", s.tr.next))
	}
	s.tr.t.checkBounds(s.pos)
	return s.tr.t, nil
}

// gpt reads the GUID partition table from the head kept, for a table
// whose protective MBR announces one; nil, nil for other tables.
func (s *scanner) gpt(t *Table) (*GPT, error) {
	if t == nil || t.Label != "gpt" {
		return nil, nil
	}
	end := fmt.Sprintf("the image's end (it is %d bytes: truncated?)", s.pos)
	if s.pos > int64(len(s.head)) {
		end = fmt.Sprintf("the first %d bytes, all that herd reads for the GPT", len(s.head))
	}
	g, err := parseGPT(s.head, end)
	if err != nil {
		return nil, err
	}
	if s.limit == 0 || s.pos < s.limit {
		// The whole image went through: its end is known.
		g.checkBounds(s.pos)
	}
	return g, nil
}

// Close returns the bytes seen and, when hashing, their SHA-256.
func (s *scanner) Close() (sink.Result, error) {
	r := sink.Result{Bytes: s.pos}
	if s.h != nil {
		r.Digest = s.h.Sum(nil)
	}
	return r, nil
}

// treeHex is the tree digest of what the scanner was given, in hex; ""
// when it computes none.
func (s *scanner) treeHex() string {
	if s.tree == nil {
		return ""
	}
	return hex.EncodeToString(s.tree.Sum(nil))
}

// Abort does nothing: the scanner holds no resources.
func (s *scanner) Abort() {}

var _ sink.Sink = (*scanner)(nil)
