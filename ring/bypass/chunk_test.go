package bypass

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/herdproject/herd/ring/stream"
	"github.com/herdproject/herd/ring/wire"
)

// chunkOf takes a chunk of p and puts frames fs in it, as the sender or a
// node does (payloads one after the other in Buf), sealed under m when m
// is not nil.
func chunkOf(t *testing.T, p *stream.Pool, m *wire.FrameMAC, fs ...Frame) *stream.Chunk {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := p.Get(ctx)
	if err != nil {
		t.Fatalf("pool: %v", err)
	}
	off := 0
	for _, f := range fs {
		n := copy(c.Buf[off:], f.Payload)
		c.Add(f.H, off, n)
		off += n
	}
	c.Seal(m)
	return c
}

// free counts the chunks back in the pool (taking and giving back each).
func free(p *stream.Pool) int {
	var cs []*stream.Chunk
	for {
		// Get picks at random between a free chunk and a done context:
		// give it a moment instead.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		c, err := p.Get(ctx)
		cancel()
		if err != nil {
			break
		}
		cs = append(cs, c)
	}
	for _, c := range cs {
		stream.Dispatch(c, nil)
	}
	return len(cs)
}

// A chunk mostly made of payload is kept, not copied: it goes back to its
// pool once its frames left the window, and what a reader gets is its
// bytes as they were added.
func TestWindowKeepsChunks(t *testing.T) {
	const size = 1000
	for _, key := range []bool{false, true} {
		var m *wire.FrameMAC
		if key {
			m = testMAC()
		}
		p := stream.NewPool(ChunkWindow(3*size, size)+1, size)
		w := NewWindow(3 * size)
		r, _, _ := w.Reader(wire.Position{File: 0, Started: true})
		var want []Frame
		for i := range 5 {
			f := dataFrame(0, uint64(i*size), size)
			c := chunkOf(t, p, m, f)
			want = append(want, Frame{H: c.Segs[0].H, Payload: f.Payload, MAC: c.MAC(0)})
			if err := w.AddChunk(bounded(t), c); err != nil {
				t.Fatal(err)
			}
			want[i].MAC = append([]byte(nil), want[i].MAC...)
			stream.Dispatch(c, nil) // no stages: only the window holds it
			if i < 2 {
				readN(t, r, want[i:i+1])
			}
		}
		// Frames 2 to 4 are held (3 chunks): 0 and 1, read, made room
		// for 3 and 4. The pool has the fourth chunk.
		if got := free(p); got != 1 {
			t.Errorf("key %v: %d chunks free, want 1 (3 kept by the window)", key, got)
		}
		readN(t, r, want[2:])
		r.Close()
		if _, ok := w.Range(want[0].H.Before(), want[1].H.After()); ok {
			t.Errorf("key %v: evicted frames still in the window", key)
		}
		got, ok := w.Range(want[2].H.Before(), want[4].H.After())
		if !ok || len(got) != 3 {
			t.Fatalf("key %v: Range of the held frames: %d, %v", key, len(got), ok)
		}
		for i := range got {
			if !sameFrame(got[i], want[2+i]) {
				t.Errorf("key %v: frame %d from Range differs", key, 2+i)
			}
		}
	}
}

// Frames of chunks that are mostly not payload (holes, control frames,
// short data) are copied: the chunk goes back to the pool at once, and
// reusing it does not change what the window holds.
func TestWindowCopiesSparseChunks(t *testing.T) {
	const size = 4096
	p := stream.NewPool(1, size)
	w := NewWindow(1 << 20)
	fs := twoFiles()
	for _, f := range fs {
		c := chunkOf(t, p, nil, f)
		if err := w.AddChunk(bounded(t), c); err != nil {
			t.Fatal(err)
		}
		stream.Dispatch(c, nil)
		// The pool's only chunk is free again; scribble on it.
		c2 := chunkOf(t, p, nil)
		for i := range c2.Buf {
			c2.Buf[i] = 0xee
		}
		stream.Dispatch(c2, nil)
	}
	r, _, covered := w.Reader(wire.Position{})
	defer r.Close()
	if !covered {
		t.Fatal("window does not cover the stream start")
	}
	readN(t, r, fs)
}

// The ring of copied frames wraps around and is reused while a reader
// follows; every frame read is the frame added.
func TestWindowRingReuse(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	const size = 1 << 12
	p := stream.NewPool(4, size)
	w := NewWindow(64 << 10) // a ring of 16 KiB
	r, _, _ := w.Reader(wire.Position{File: 0, Started: true})
	defer r.Close()
	off := uint64(0)
	for i := range 2000 {
		n := 1 + rnd.IntN(size/2-1) // short: copied
		f := dataFrame(0, off, n)
		if i%3 == 0 {
			f = holeFrame(0, off, uint32(n))
		}
		off += uint64(n)
		c := chunkOf(t, p, nil, f)
		if err := w.AddChunk(bounded(t), c); err != nil {
			t.Fatal(err)
		}
		stream.Dispatch(c, nil)
		if i%4 != 3 {
			continue
		}
		// Catch up, as a rescuer feeding a node would.
		for {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			g, err := r.Next(ctx)
			if err != nil {
				break
			}
			if want := payload(g.H.Offset, len(g.Payload)); g.H.Type == wire.TData && string(g.Payload) != string(want) {
				t.Fatalf("frame at %d: payload differs", g.H.Offset)
			}
		}
	}
	if w.bytes > w.limit {
		t.Errorf("window holds %d bytes, limit %d", w.bytes, w.limit)
	}
}
