// Package stream is the ring's data pipeline: a bounded pool of chunks, and
// the stages that consume them concurrently (forward to children, write to
// disk, hash). A chunk is read once into a pooled buffer, handed to every
// stage, and returns to the pool when the last stage releases it, so memory
// is fixed whatever the image size and a slow stage slows the producer
// (backpressure) instead of growing a queue.
package stream

import (
	"bytes"
	"context"
	"sync/atomic"

	"github.com/herdproject/herd/ring/wire"
)

// Seg is one frame inside a chunk: a header and, for Data, its payload's
// place in the chunk's buffer.
type Seg struct {
	H        wire.Header
	Off, Len int
}

// Chunk is a pooled buffer with the frames it carries.
type Chunk struct {
	Buf  []byte
	Segs []Seg
	// hdrs holds the encoded headers of Segs, HeaderSize each.
	hdrs []byte
	// macs holds the MACs of Segs, MACSize each, when the chunk is sealed.
	macs []byte
	refs atomic.Int32
	pool *Pool
}

// Payload returns the bytes of segment i (nil for frames without payload).
func (c *Chunk) Payload(i int) []byte {
	s := c.Segs[i]
	return c.Buf[s.Off : s.Off+s.Len]
}

// Header returns the encoded header of segment i.
func (c *Chunk) Header(i int) []byte {
	return c.hdrs[i*wire.HeaderSize : (i+1)*wire.HeaderSize]
}

// MAC returns the MAC of segment i, nil when the chunk is not sealed.
func (c *Chunk) MAC(i int) []byte {
	if len(c.macs) < (i+1)*wire.MACSize {
		return nil
	}
	return c.macs[i*wire.MACSize : (i+1)*wire.MACSize]
}

// Add appends a frame; payload, if any, must already be in Buf[off:off+n].
func (c *Chunk) Add(h wire.Header, off, n int) {
	c.Segs = append(c.Segs, Seg{H: h, Off: off, Len: n})
	var b [wire.HeaderSize]byte
	h.Put(b[:])
	c.hdrs = append(c.hdrs, b[:]...)
}

// AddSealed appends a frame received with its MAC (already verified), to
// be forwarded as it came. A chunk holds sealed frames only, or none.
func (c *Chunk) AddSealed(h wire.Header, off, n int, mac []byte) {
	c.Add(h, off, n)
	c.macs = append(c.macs, mac...)
}

// Seal sets FlagMAC on every frame and computes its MAC; nil m leaves the
// chunk unsealed.
func (c *Chunk) Seal(m *wire.FrameMAC) {
	if m == nil {
		return
	}
	c.macs = c.macs[:0]
	for i := range c.Segs {
		c.Segs[i].H.Flags |= wire.FlagMAC
		c.Segs[i].H.Put(c.Header(i))
		c.macs = m.Sum(c.macs, c.Header(i), c.Payload(i))
	}
}

// Bytes is the number of stream bytes the chunk stands for (data and holes).
func (c *Chunk) Bytes() int64 {
	var n int64
	for _, s := range c.Segs {
		if s.H.Type == wire.TData || s.H.Type == wire.THole {
			n += int64(s.H.Length)
		}
	}
	return n
}

// Release drops one reference; the last one returns the chunk to its pool.
func (c *Chunk) Release() {
	switch r := c.refs.Add(-1); {
	case r == 0:
		c.Segs, c.hdrs, c.macs = c.Segs[:0], c.hdrs[:0], c.macs[:0]
		c.pool.free <- c
	case r < 0:
		panic("stream: chunk released too often")
	}
}

// Pool is a fixed set of chunks.
type Pool struct {
	free chan *Chunk
	size int
}

// NewPool makes n chunks of size bytes each.
func NewPool(n, size int) *Pool {
	p := &Pool{free: make(chan *Chunk, n), size: size}
	for range n {
		p.free <- &Chunk{Buf: make([]byte, size), pool: p}
	}
	return p
}

// ChunkSize is the size of the pool's buffers.
func (p *Pool) ChunkSize() int { return p.size }

// Cap is the number of chunks in the pool.
func (p *Pool) Cap() int { return cap(p.free) }

// Get waits for a free chunk: this is where backpressure stops a producer.
func (p *Pool) Get(ctx context.Context) (*Chunk, error) {
	select {
	case c := <-p.free:
		return c, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// Stage is a consumer of chunks: it must Release every chunk it receives.
type Stage interface {
	In() chan<- *Chunk
}

// Hold takes a reference to c beside the stages' (a window that keeps its
// frames): c goes back to its pool once that is released too. Call it
// before Dispatch.
func (c *Chunk) Hold() { c.refs.Add(1) }

// Dispatch hands c to every stage; each must release it. Without stages,
// c goes back to its pool (unless held).
func Dispatch(c *Chunk, stages []Stage) {
	if len(stages) == 0 {
		c.refs.Add(1)
		c.Release()
		return
	}
	c.refs.Add(int32(len(stages)))
	for _, s := range stages {
		s.In() <- c
	}
}

// zeroBlock is compared against to find holes.
var zeroBlock [HoleBlock]byte

// HoleBlock is the granularity of hole detection in bytes.
const HoleBlock = 4096

// IsZero reports whether p is all zero bytes.
func IsZero(p []byte) bool {
	for len(p) > 0 {
		n := min(len(p), len(zeroBlock))
		if !bytes.Equal(p[:n], zeroBlock[:n]) {
			return false
		}
		p = p[n:]
	}
	return true
}

// Segment turns Buf[:n], the bytes of file at stream offset off, into Data
// and Hole frames: runs of all-zero HoleBlock blocks become holes, the
// rest data.
func (c *Chunk) Segment(file uint32, off uint64, n int) {
	start, zero := 0, false
	flush := func(end int) {
		if end == start {
			return
		}
		h := wire.Header{File: file, Offset: off + uint64(start), Length: uint32(end - start)}
		if zero {
			h.Type = wire.THole
			c.Add(h, 0, 0)
		} else {
			h.Type = wire.TData
			c.Add(h, start, end-start)
		}
		start = end
	}
	for b := 0; b < n; b += HoleBlock {
		e := min(b+HoleBlock, n)
		z := IsZero(c.Buf[b:e])
		if b == 0 {
			zero = z
		} else if z != zero {
			flush(b)
			zero = z
		}
	}
	flush(n)
}

// Zeros is a shared read-only buffer of zero bytes for hashing or writing
// holes.
var Zeros = make([]byte, 1<<20)
