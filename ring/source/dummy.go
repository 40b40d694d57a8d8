package source

import "io"

// dummyPeriod is the length of the repeated pattern: a prime, so that
// chunks of any power-of-two size differ from one another.
const dummyPeriod = 65521

// Dummy returns dolly's dummy-mode data (-t): size deterministic bytes, none
// of them zero (so nothing travels as a hole), or an endless stream when
// size < 0. Read copies from a pattern made once; it does not allocate.
func Dummy(size int64) io.Reader {
	d := &dummy{left: size}
	x := uint64(0x9e3779b97f4a7c15)
	for i := range d.pat {
		// xorshift64
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b := byte(x >> 24)
		if b == 0 {
			b = 0xa5
		}
		d.pat[i] = b
	}
	return d
}

type dummy struct {
	pat  [dummyPeriod]byte
	off  int // position in pat
	left int64
}

func (d *dummy) Read(p []byte) (int, error) {
	if d.left == 0 {
		return 0, io.EOF
	}
	if d.left > 0 && int64(len(p)) > d.left {
		p = p[:d.left]
	}
	n := 0
	for n < len(p) {
		k := copy(p[n:], d.pat[d.off:])
		n += k
		d.off = (d.off + k) % dummyPeriod
	}
	if d.left > 0 {
		d.left -= int64(n)
	}
	return n, nil
}
