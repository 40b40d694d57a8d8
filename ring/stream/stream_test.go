package stream

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/herdproject/herd/ring/digest"
	"github.com/herdproject/herd/ring/wire"
)

func TestSegment(t *testing.T) {
	const B = HoleBlock
	tests := []struct {
		name  string
		data  []int // per block: 0 zero, 1 data; last block may be short via tail
		tail  int   // bytes in the last block (0 = full)
		types []wire.Type
		lens  []uint32
	}{
		{"all data", []int{1, 1, 1}, 0, []wire.Type{wire.TData}, []uint32{3 * B}},
		{"all zero", []int{0, 0}, 0, []wire.Type{wire.THole}, []uint32{2 * B}},
		{"mixed", []int{1, 0, 0, 1}, 0, []wire.Type{wire.TData, wire.THole, wire.TData}, []uint32{B, 2 * B, B}},
		{"short zero tail", []int{1, 0}, 100, []wire.Type{wire.TData, wire.THole}, []uint32{B, 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewPool(1, 8*B)
			c, _ := p.Get(context.Background())
			n := len(tt.data) * B
			if tt.tail > 0 {
				n = (len(tt.data)-1)*B + tt.tail
			}
			clear(c.Buf)
			for i, d := range tt.data {
				if d == 1 {
					c.Buf[i*B+7] = 0xAA
				}
			}
			c.Segment(2, 1000, n)
			if len(c.Segs) != len(tt.types) {
				t.Fatalf("got %d segments, want %d: %+v", len(c.Segs), len(tt.types), c.Segs)
			}
			off := uint64(1000)
			for i, s := range c.Segs {
				if s.H.Type != tt.types[i] || s.H.Length != tt.lens[i] || s.H.Offset != off || s.H.File != 2 {
					t.Errorf("segment %d: %+v", i, s.H)
				}
				off += uint64(s.H.Length)
			}
			if c.Bytes() != int64(n) {
				t.Errorf("Bytes() = %d, want %d", c.Bytes(), n)
			}
		})
	}
}

// A pool of two chunks blocks the producer until a consumer releases one.
func TestPoolBackpressure(t *testing.T) {
	p := NewPool(2, 16)
	ctx := context.Background()
	a, _ := p.Get(ctx)
	b, _ := p.Get(ctx)
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := p.Get(short); err == nil {
		t.Fatal("third Get succeeded on a pool of two")
	}
	Dispatch(a, nil)
	if _, err := p.Get(ctx); err != nil {
		t.Fatal(err)
	}
	_ = b
}

func TestIsZero(t *testing.T) {
	b := make([]byte, 3*HoleBlock+5)
	if !IsZero(b) {
		t.Fatal("zeros not zero")
	}
	b[len(b)-1] = 1
	if IsZero(b) {
		t.Fatal("last byte missed")
	}
}

// TestHasher: the Hasher stage gives each file the digest of its stream,
// on one core or several (the tree's leaves hashed in parallel), with
// chunks smaller and larger than a leaf that mix data and holes, and every
// chunk is back in the pool once it is closed.
func TestHasher(t *testing.T) {
	for _, alg := range digest.Algs {
		for _, workers := range []int{1, 2, 4} {
			for _, chunk := range []int{64 << 10, 512 << 10, 3 << 20} {
				t.Run(fmt.Sprintf("%s/workers=%d/chunk=%d", alg, workers, chunk), func(t *testing.T) {
					testHasher(t, alg, workers, chunk)
				})
			}
		}
	}
}

func testHasher(t *testing.T, alg digest.Alg, workers, chunk int) {
	ctx := context.Background()
	pool := NewPool(4, chunk)
	h := newHasher(2, alg, workers)
	rng := rand.New(rand.NewPCG(uint64(chunk), 5))
	// Three files: dense, with holes of whole leaves and blocks, and
	// empty; sizes that end inside a leaf and a chunk.
	sizes := []int{5*digest.LeafSize/2 + 123, 4*digest.LeafSize + 4096*3 + 1, 0}
	var want [][]byte
	for f, size := range sizes {
		ctrl := func(typ wire.Type) {
			c, _ := pool.Get(ctx)
			c.Add(wire.Header{Type: typ, File: uint32(f)}, 0, 0)
			Dispatch(c, []Stage{h})
		}
		ctrl(wire.TFileStart)
		ref := digest.New(alg)
		for off := 0; off < size; {
			c, err := pool.Get(ctx)
			if err != nil {
				t.Fatal(err)
			}
			n := min(chunk, size-off)
			clear(c.Buf[:n])
			if f == 0 || (off/digest.LeafSize)%3 == 0 {
				for i := 0; i < n; i += 4096 * (1 + f) {
					c.Buf[i] = byte(rng.Uint32() | 1)
				}
			}
			c.Segment(uint32(f), uint64(off), n)
			ref.Write(c.Buf[:n])
			off += n
			Dispatch(c, []Stage{h})
		}
		ctrl(wire.TFileEnd)
		want = append(want, ref.Sum(nil))
	}
	h.Close()
	for f, w := range want {
		got, ok := h.Sum(uint32(f))
		if !ok {
			t.Fatalf("file %d: no digest", f)
		}
		if got.Bytes != int64(sizes[f]) || !bytes.Equal(got.Digest, w) {
			t.Errorf("file %d: %d bytes %x, want %d bytes %x", f, got.Bytes, got.Digest, sizes[f], w)
		}
	}
	if n := len(pool.free); n != pool.Cap() {
		t.Errorf("%d of %d chunks back in the pool", n, pool.Cap())
	}
}
