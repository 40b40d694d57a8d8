package stream

import (
	"context"
	"testing"
	"time"

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
