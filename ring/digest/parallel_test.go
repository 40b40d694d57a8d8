package digest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
)

// feedParallel runs ops through p as the ring's Hasher does: each write's
// buffer is scribbled over once p says it is done with it, so that a
// worker that hashed it late would give a wrong digest. It returns the
// stream and the number of writes and of dones so far.
func feedParallel(t *testing.T, p *Parallel, ops []op, rng *rand.Rand) (data []byte, dones func() (calls, writes int64)) {
	t.Helper()
	var calls, writes atomic.Int64
	for _, o := range ops {
		if o.hole {
			p.Zeros(int64(o.n))
			data = append(data, make([]byte, o.n)...)
			continue
		}
		b := make([]byte, o.n)
		for i := range b {
			b[i] = byte(rng.Uint32() | 1)
		}
		data = append(data, b...)
		writes.Add(1)
		var once atomic.Bool
		p.Write(b, func() {
			if once.Swap(true) {
				t.Errorf("done of a %d-byte write called twice", len(b))
			}
			calls.Add(1)
			clear(b) // the caller may reuse it now
		})
	}
	return data, func() (int64, int64) { return calls.Load(), writes.Load() }
}

// finish checks p's digest of data and that every write was done.
func finish(t *testing.T, p *Parallel, data []byte, dones func() (int64, int64)) {
	t.Helper()
	if got, w := p.Finish(nil), reference(data); !bytes.Equal(got, w) {
		t.Fatalf("digest %x, want %x", got, w)
	}
	if c, w := dones(); c != w {
		t.Errorf("%d dones for %d writes after Finish", c, w)
	}
}

// TestParallel: the parallel tree gives Tree's digest, however the stream
// is cut into writes and holes and whatever the number of workers, and
// again after Reset (the next file of a session).
func TestParallel(t *testing.T) {
	L := LeafSize
	cases := append(streamCases(),
		streamCase{"one write of many leaves", []op{{false, 5*L + 17}}},
		streamCase{"half leaves (512 KiB chunks)", []op{{false, L / 2}, {false, L / 2}, {false, L / 2}, {true, L / 2}, {false, L / 2}}},
		streamCase{"only a short hole", []op{{true, 10}}},
		streamCase{"hole pieces making a zero leaf", []op{{true, L / 4}, {true, L / 4}, {true, L / 2}, {false, 1}}},
		streamCase{"zero leaves between data leaves", []op{{false, L}, {true, 4 * L}, {false, L}, {true, L}, {false, 2}}},
	)
	for _, workers := range []int{1, 2, 3, 4} {
		for _, tc := range cases {
			t.Run(fmt.Sprintf("%d/%s", workers, tc.name), func(t *testing.T) {
				p := NewParallel(workers)
				defer p.Close()
				rng := rand.New(rand.NewPCG(1, 2))
				for file := range 2 {
					p.Reset()
					data, dones := feedParallel(t, p, tc.ops, rng)
					if got := p.Len(); got != int64(len(data)) {
						t.Errorf("file %d: Len %d, want %d", file, got, len(data))
					}
					finish(t, p, data, dones)
				}
			})
		}
	}
}

// TestParallelResetMidLeaf: a stream abandoned in the middle of a leaf
// (a file cut short) leaves nothing behind for the next.
func TestParallelResetMidLeaf(t *testing.T) {
	p := NewParallel(2)
	defer p.Close()
	p.Write(pattern(LeafSize+5), nil)
	p.Reset()
	data := pattern(3)
	p.Write(data, nil)
	if got, w := p.Finish(nil), reference(data); !bytes.Equal(got, w) {
		t.Fatalf("after Reset: %x, want %x", got, w)
	}
}

// FuzzParallel: any sequence of writes and holes, on any number of
// workers, gives the reference digest of the stream it makes.
func FuzzParallel(f *testing.F) {
	f.Add([]byte{1, 2, 3}, uint64(1), uint8(2))
	f.Add([]byte{0x80, 0xff, 0x7f, 0x01}, uint64(7), uint8(3))
	f.Add([]byte{0x40, 0xc0, 0x40}, uint64(9), uint8(1))
	f.Fuzz(func(t *testing.T, prog []byte, seed uint64, workers uint8) {
		if len(prog) > 64 {
			prog = prog[:64]
		}
		var ops []op
		for _, b := range prog {
			n := int(b&0x3f) * 37
			if b>>6&1 == 1 {
				n = LeafSize - 512 + int(b&0x3f)*31
			}
			ops = append(ops, op{hole: b&0x80 != 0, n: n})
		}
		p := NewParallel(int(workers%5) + 1)
		defer p.Close()
		data, dones := feedParallel(t, p, ops, rand.New(rand.NewPCG(seed, 3)))
		finish(t, p, data, dones)
	})
}

// BenchmarkParallel is the parallel tree on 512 KiB writes (the ring's
// default chunk) from a buffer larger than the caches, on 1 to 4 workers:
// MB/s grows with the workers as long as there are cores to run them.
func BenchmarkParallel(b *testing.B) {
	const piece = 512 << 10
	buf := pattern(64 << 20)
	for _, workers := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			p := NewParallel(workers)
			defer p.Close()
			b.SetBytes(piece)
			off := 0
			for b.Loop() {
				p.Write(buf[off:off+piece], nil)
				off = (off + piece) % len(buf)
			}
			p.Finish(nil)
		})
	}
}

// TestConcurrent: every hash fed through Concurrent gets the whole stream,
// writes large and small, holes included.
func TestConcurrent(t *testing.T) {
	data := pattern(3*LeafSize + 77)
	clear(data[LeafSize : 2*LeafSize])
	for _, n := range []int{0, 1, 2, 3} {
		var c Concurrent
		for i := range n {
			c = append(c, New(Algs[i%len(Algs)]))
		}
		c.Write(data[:100])                      // small: one after the other
		c.Write(data[100:LeafSize])              // large: side by side
		c.Zeros(LeafSize)                        // the hole
		c.Write(data[2*LeafSize : 2*LeafSize+5]) // small again
		c.Write(data[2*LeafSize+5:])
		for i, h := range c {
			if got, w := h.Sum(nil), want(Algs[i%len(Algs)], data); !bytes.Equal(got, w) {
				t.Errorf("%d hashes: hash %d (%s): %x, want %x", n, i, Algs[i%len(Algs)], got, w)
			}
		}
	}
}

// TestParallelHugeHole: a terabyte hole behind a leaf still being hashed
// waits for its turn as one entry, not a million, and gives Tree's digest.
func TestParallelHugeHole(t *testing.T) {
	p := NewParallel(2)
	defer p.Close()
	hold := make(chan struct{})
	data := pattern(LeafSize)
	p.Write(data, func() { <-hold }) // the worker waits here, its leaf not folded
	const hole = 1 << 40
	p.Zeros(hole)
	p.mu.Lock()
	held := len(p.held)
	p.mu.Unlock()
	close(hold)
	if held > 1 {
		t.Errorf("%d entries wait for the first leaf, want 1 (the hole's run)", held)
	}
	want := New(Tree)
	want.Write(data)
	want.Zeros(hole)
	if got, w := p.Finish(nil), want.Sum(nil); !bytes.Equal(got, w) {
		t.Fatalf("%x, want %x", got, w)
	}
}
