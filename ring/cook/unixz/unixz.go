// Package unixz decodes the output of Unix compress(1): ".Z" files, LZW with
// 9 to 16 bit codes.
//
// Go's compress/lzw is not this format (it has no header, no block mode and
// no code-group padding). The only Go decoder found for .Z is a literal
// translation of compress42.c last touched for Go 1.4, so this package is a
// small, fuzzed decoder written from the format as ncompress 4.2.4 reads it:
//
//   - a 3-byte header: magic 0x1F 0x9D, then a flags byte whose low 5 bits are
//     the maximum code width (9..16) and whose 0x80 bit selects block mode
//     (the 0x60 bits are reserved and ignored, as ncompress and gzip do);
//   - codes packed least significant bit first, starting 9 bits wide and
//     growing by one bit each time the next free table slot reaches 2^width,
//     up to the maximum width;
//   - in block mode, code 256 is CLEAR: the table is emptied and the width
//     drops back to 9 bits;
//   - the classic quirk: compress writes codes in groups of 8 (one group is
//     exactly "width" bytes), and when the width changes (growth or CLEAR)
//     the rest of the current group is padding the decoder must skip.
package unixz

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// Magic is the two bytes every .Z stream starts with.
var Magic = [2]byte{0x1f, 0x9d}

const (
	initBits  = 9    // code width at the start and after CLEAR
	maxBits   = 16   // widest code any compress writes or reads
	blockMode = 0x80 // flags bit: CLEAR (code 256) is in use
	bitsMask  = 0x1f // flags bits: the maximum code width
	clearCode = 256
)

// ErrHeader reports a stream that does not start with a .Z header or whose
// maximum code width is out of range.
var ErrHeader = errors.New("unixz: invalid .Z header")

// ErrCorrupt reports a code that cannot occur in a stream compress wrote.
var ErrCorrupt = errors.New("unixz: corrupt input")

// Reader decompresses a .Z stream. It reads its source to the end: a .Z
// stream has no end marker, the last code simply ends the input.
type Reader struct {
	src *bufio.Reader
	err error // sticky: set once the stream ended or failed

	maxBits   uint
	blockMode bool
	maxMax    int // 1 << maxBits: no table entry at or above it

	// bit reader
	bitBuf uint64 // pending input bits, least significant first
	nBits  uint   // how many bits of bitBuf are valid

	// decoder state, as ncompress names it
	width   uint // current code width
	maxCode int  // grow the width once freeEnt exceeds this
	freeEnt int  // next free table slot
	oldCode int  // previous code, -1 before the first one
	finChar byte // first byte of the previous code's string
	inGroup int  // codes read since the current group of 8 began

	prefix [1 << maxBits]uint16
	suffix [1 << maxBits]byte

	// decoded bytes not yet returned, stored backwards in stack[sp:]
	stack [1 << maxBits]byte
	sp    int
}

// NewReader reads the 3-byte header from r and returns a Reader for the
// decoded bytes. It returns ErrHeader (wrapped) for anything but a .Z header,
// and io.ErrUnexpectedEOF for an input shorter than the header.
func NewReader(r io.Reader) (*Reader, error) {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	var hdr [3]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("unixz: read header: %w", err)
	}
	if hdr[0] != Magic[0] || hdr[1] != Magic[1] {
		return nil, fmt.Errorf("%w: magic %02x %02x, want 1f 9d", ErrHeader, hdr[0], hdr[1])
	}
	mb := uint(hdr[2] & bitsMask)
	if mb < initBits || mb > maxBits {
		return nil, fmt.Errorf("%w: maximum code width %d bits, want %d..%d", ErrHeader, mb, initBits, maxBits)
	}
	z := &Reader{
		src:       br,
		maxBits:   mb,
		blockMode: hdr[2]&blockMode != 0,
		maxMax:    1 << mb,
		oldCode:   -1,
		sp:        1 << maxBits,
	}
	z.setWidth(initBits)
	z.freeEnt = 256
	if z.blockMode {
		z.freeEnt = 257
	}
	for i := range 256 {
		z.suffix[i] = byte(i)
	}
	return z, nil
}

// setWidth switches to w-bit codes; the group of 8 starts afresh.
//
// Like ncompress and gzip, the 9-bit start never looks at the maximum width:
// a stream that declares 9 bits still widens to 10 once its table is full.
// (ncompress 4.2.4 writes such streams with -b 9 and cannot read them back;
// no decoder does, so this only keeps the behaviour identical.)
func (z *Reader) setWidth(w uint) {
	z.width = w
	if w == z.maxBits && w != initBits {
		z.maxCode = z.maxMax
	} else {
		z.maxCode = 1<<w - 1
	}
	z.inGroup = 0
}

// skipGroup discards the codes left in the current group of 8: compress
// pads the group out when it changes the code width.
func (z *Reader) skipGroup() error {
	if z.inGroup == 0 {
		return nil
	}
	for range 8 - z.inGroup {
		if _, err := z.readCode(); err != nil {
			return err
		}
	}
	z.inGroup = 0
	return nil
}

// readCode returns the next code of the current width, or io.EOF when fewer
// bits than a whole code remain (compress pads the last byte with zeros).
func (z *Reader) readCode() (int, error) {
	for z.nBits < z.width {
		b, err := z.src.ReadByte()
		if err != nil {
			// At io.EOF, a partial code is the zero padding of the last byte.
			return 0, err
		}
		z.bitBuf |= uint64(b) << z.nBits
		z.nBits += 8
	}
	code := int(z.bitBuf & (1<<z.width - 1))
	z.bitBuf >>= z.width
	z.nBits -= z.width
	z.inGroup++
	if z.inGroup == 8 {
		z.inGroup = 0
	}
	return code, nil
}

// Read implements io.Reader.
func (z *Reader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if z.sp < len(z.stack) {
			c := copy(p[n:], z.stack[z.sp:])
			z.sp += c
			n += c
			continue
		}
		if z.err != nil {
			break
		}
		z.err = z.decodeOne()
	}
	if n > 0 {
		return n, nil
	}
	return 0, z.err
}

// decodeOne reads one code and pushes its string onto the stack.
func (z *Reader) decodeOne() error {
	for {
		if z.freeEnt > z.maxCode {
			if err := z.skipGroup(); err != nil {
				return err
			}
			z.setWidth(z.width + 1)
		}
		code, err := z.readCode()
		if err != nil {
			return err
		}
		if z.oldCode == -1 {
			if code >= 256 {
				return fmt.Errorf("%w: first code %d is not a literal", ErrCorrupt, code)
			}
			z.oldCode = code
			z.finChar = byte(code)
			z.push(byte(code))
			return nil
		}
		if code == clearCode && z.blockMode {
			// ncompress keeps oldCode: the first code after CLEAR fills
			// slot 256 with a junk entry nobody can reference.
			if err := z.skipGroup(); err != nil {
				return err
			}
			z.freeEnt = 256
			z.setWidth(initBits)
			continue
		}
		inCode := code
		if code >= z.freeEnt {
			if code > z.freeEnt {
				return fmt.Errorf("%w: code %d beyond the next free entry %d", ErrCorrupt, code, z.freeEnt)
			}
			// KwKwK: the string of the previous code plus its own first byte.
			z.push(z.finChar)
			code = z.oldCode
		}
		for code >= 256 {
			if z.sp == 0 {
				return fmt.Errorf("%w: string longer than the table", ErrCorrupt)
			}
			z.push(z.suffix[code])
			code = int(z.prefix[code])
		}
		z.finChar = z.suffix[code]
		if z.sp == 0 {
			return fmt.Errorf("%w: string longer than the table", ErrCorrupt)
		}
		z.push(z.finChar)
		if z.freeEnt < z.maxMax {
			z.prefix[z.freeEnt] = uint16(z.oldCode)
			z.suffix[z.freeEnt] = z.finChar
			z.freeEnt++
		}
		z.oldCode = inCode
		return nil
	}
}

func (z *Reader) push(b byte) {
	z.sp--
	z.stack[z.sp] = b
}
