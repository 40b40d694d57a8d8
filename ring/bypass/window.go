package bypass

import (
	"context"
	"errors"
	"io"
	"sort"
	"sync"

	"github.com/herdproject/herd/ring/stream"
	"github.com/herdproject/herd/ring/wire"
)

// DefaultWindow is the default window size in bytes: more than a chain
// link holds in flight (a node's pool and four socket buffers), so that a
// bypass seldom needs the sender.
const DefaultWindow = 64 << 20

// ChunkWindow is the number of pool chunks of chunkSize bytes that a
// window of limit bytes (0: DefaultWindow) may keep (AddChunk): the pool
// that feeds it needs that many beyond what its stages hold.
func ChunkWindow(limit, chunkSize int) int {
	if limit <= 0 {
		limit = DefaultWindow
	}
	return max(1, limit/max(chunkSize, 1))
}

// Window keeps the last frames of a stream, in order, up to a size. A
// Reader pins what it has not read yet: Add waits for a reader that lags
// more than the window (backpressure, as a slow child gives), and readers
// that stop are the rescuer's to drop.
//
// A window fed by AddChunk keeps the stream without copying it or
// allocating per frame: a pooled chunk mostly made of payload is kept
// whole (it goes back to its pool when its frames leave the window, so
// the pool needs ChunkWindow more chunks), and the frames of other chunks
// (holes, control frames, short data) are copied into a buffer of a
// quarter of the window that is reused in turn (a ring).
type Window struct {
	mu     sync.Mutex
	cond   *sync.Cond
	frames []held
	base   int64 // sequence number of frames[0]
	bytes  int
	limit  int
	head   wire.Position // after the newest frame
	pins   map[*Reader]struct{}
	closed bool
	ring   ring // the bytes of copied frames
}

// held is a frame in the window.
type held struct {
	Frame
	cost  int           // the window's bytes it takes
	ring  int           // the ring's bytes it takes
	chunk *stream.Chunk // released when this frame leaves (a kept chunk's last)
}

// ring is a buffer that frames' bytes are allocated from in order and
// freed from in the same order. The bytes in use are [head, tail), or,
// after the allocation wrapped to the start, [head, wrap) and [0, tail).
type ring struct {
	buf        []byte
	head, tail int
	wrap       int // where the bytes in use before the wrap end; -1 when not wrapped
	live       int // allocations in use
}

// alloc returns n bytes of the ring, false when they are not free now.
func (r *ring) alloc(n int) ([]byte, bool) {
	if r.live == 0 {
		r.head, r.tail, r.wrap = 0, 0, -1
	}
	off := -1
	switch {
	case r.wrap < 0 && len(r.buf)-r.tail >= n:
		off = r.tail
	case r.wrap < 0 && r.head >= n:
		off, r.wrap = 0, r.tail
	case r.wrap >= 0 && r.head-r.tail >= n:
		off = r.tail
	}
	if off < 0 {
		return nil, false
	}
	r.tail = off + n
	r.live++
	return r.buf[off:r.tail:r.tail], true
}

// free frees the oldest allocation, of n bytes.
func (r *ring) free(n int) {
	r.live--
	r.head += n
	if r.head == r.wrap {
		r.head, r.wrap = 0, -1
	}
}

// NewWindow makes a window of limit bytes (0: DefaultWindow).
func NewWindow(limit int) *Window {
	if limit <= 0 {
		limit = DefaultWindow
	}
	w := &Window{limit: limit, pins: map[*Reader]struct{}{}}
	w.cond = sync.NewCond(&w.mu)
	return w
}

// errClosed is Add after Close.
var errClosed = errors.New("window closed")

// Add appends frames, which the window then owns, evicting the oldest ones
// beyond the limit that no reader still needs; it waits while a reader
// needs them, until ctx ends.
func (w *Window) Add(ctx context.Context, fs ...Frame) error {
	stop := context.AfterFunc(ctx, w.wake)
	defer stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, f := range fs {
		if _, _, err := w.room(ctx, f.size(), 0); err != nil {
			return err
		}
		w.push(held{Frame: f, cost: f.size()})
	}
	w.cond.Broadcast()
	return nil
}

// AddChunk appends chunk c's frames as Add does, c being a pooled chunk
// that the caller then dispatches: c is kept (Hold) when it is mostly
// payload, its frames copied otherwise.
func (w *Window) AddChunk(ctx context.Context, c *stream.Chunk) error {
	if len(c.Segs) == 0 {
		return nil
	}
	stop := context.AfterFunc(ctx, w.wake)
	defer stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	payload := 0
	for _, sg := range c.Segs {
		payload += sg.Len
	}
	if payload > 0 && 2*payload >= len(c.Buf) {
		if _, _, err := w.room(ctx, len(c.Buf), 0); err != nil {
			return err
		}
		c.Hold()
		last := len(c.Segs) - 1
		for i, sg := range c.Segs {
			h := held{Frame: Frame{H: sg.H, MAC: c.MAC(i)}}
			if sg.Len > 0 {
				h.Payload = c.Payload(i)
			}
			if i == last {
				h.cost, h.chunk = len(c.Buf), c
			}
			w.push(h)
		}
		w.cond.Broadcast()
		return nil
	}
	if w.ring.buf == nil {
		w.ring = ring{buf: make([]byte, w.limit/4), wrap: -1}
	}
	for i, sg := range c.Segs {
		var p []byte
		if sg.Len > 0 {
			p = c.Payload(i)
		}
		f := Frame{H: sg.H, Payload: p, MAC: c.MAC(i)}
		need := len(f.Payload) + len(f.MAC)
		b, inRing, err := w.room(ctx, f.size(), need)
		if err != nil {
			return err
		}
		if need > 0 && !inRing {
			b = make([]byte, need)
		}
		h := held{Frame: place(f, b), cost: f.size()}
		if inRing {
			h.ring = need
		}
		w.push(h)
	}
	w.cond.Broadcast()
	return nil
}

// room makes room for cost bytes, and need bytes of the ring when need is
// more than 0 and fits it (inRing), evicting the oldest frames that no
// reader needs and waiting for the others, until ctx ends. With the window
// empty, a frame that costs more than the limit is held alone. w.mu is
// held.
func (w *Window) room(ctx context.Context, cost, need int) (b []byte, inRing bool, err error) {
	useRing := need > 0 && need <= len(w.ring.buf)
	for {
		if w.closed {
			return nil, false, errClosed
		}
		if w.bytes+cost <= w.limit {
			if !useRing {
				return nil, false, nil
			}
			if b, ok := w.ring.alloc(need); ok {
				return b, true, nil
			}
		}
		if len(w.frames) == 0 {
			return nil, false, nil
		}
		if w.pinned() <= w.base {
			if ctx.Err() != nil {
				return nil, false, context.Cause(ctx)
			}
			w.cond.Broadcast() // a reader may be waiting for what was added
			w.cond.Wait()
			continue
		}
		w.evict()
	}
}

// push appends h as the newest frame. w.mu is held.
func (w *Window) push(h held) {
	w.frames = append(w.frames, h)
	w.bytes += h.cost
	w.head = h.H.After()
}

// place returns f with its payload and MAC copied to b (their size).
func place(f Frame, b []byte) Frame {
	g := Frame{H: f.H}
	if p := len(f.Payload); p > 0 {
		g.Payload = b[:p:p]
		copy(g.Payload, f.Payload)
	}
	if m := len(f.MAC); m > 0 {
		g.MAC = b[len(b)-m:]
		copy(g.MAC, f.MAC)
	}
	return g
}

// evict drops the oldest frame. w.mu is held.
func (w *Window) evict() {
	h := &w.frames[0]
	w.bytes -= h.cost
	if h.ring > 0 {
		w.ring.free(h.ring)
	}
	if h.chunk != nil {
		h.chunk.Release()
	}
	*h = held{}
	w.frames = w.frames[1:]
	w.base++
}

func (w *Window) wake() {
	w.mu.Lock()
	w.cond.Broadcast()
	w.mu.Unlock()
}

// pinned is the lowest sequence number a reader still needs.
func (w *Window) pinned() int64 {
	lo := w.base + int64(len(w.frames))
	for r := range w.pins {
		lo = min(lo, r.next)
	}
	return lo
}

// Close ends the stream: readers get io.EOF after the last frame.
func (w *Window) Close() {
	w.mu.Lock()
	w.closed = true
	w.cond.Broadcast()
	w.mu.Unlock()
}

// start is the position of the oldest frame held.
func (w *Window) start() wire.Position {
	if len(w.frames) == 0 {
		return w.head
	}
	return w.frames[0].H.Before()
}

// index is the sequence number of the first frame that ends after p.
func (w *Window) index(p wire.Position) int64 {
	i := sort.Search(len(w.frames), func(i int) bool { return p.Less(w.frames[i].H.After()) })
	return w.base + int64(i)
}

// Reader returns a reader of the frames from p on, pinned. When the window
// no longer holds p (covered false), the reader starts at the oldest frame
// held, at position start: the caller gets [p, start) elsewhere first.
func (w *Window) Reader(p wire.Position) (r *Reader, start wire.Position, covered bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	r = &Reader{w: w}
	start = w.start()
	covered = !p.Less(start)
	if covered {
		r.next = w.index(p)
	} else {
		r.next = w.base
	}
	w.pins[r] = struct{}{}
	return r, start, covered
}

// Range returns copies of the frames that cover [from, to) when the window
// holds all of them (the first may begin before from, the last end after
// to).
func (w *Window) Range(from, to wire.Position) ([]Frame, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if from.Less(w.start()) || w.head.Less(to) {
		return nil, false
	}
	i, j := w.index(from)-w.base, w.index(to)-w.base
	if j < int64(len(w.frames)) && w.frames[j].H.Before().Less(to) {
		j++
	}
	held := w.frames[i:j]
	n := 0
	for _, h := range held {
		n += len(h.Payload) + len(h.MAC)
	}
	buf := make([]byte, n)
	out := make([]Frame, len(held))
	for k, h := range held {
		m := len(h.Payload) + len(h.MAC)
		out[k] = place(h.Frame, buf[:m:m])
		buf = buf[m:]
	}
	return out, true
}

// Reader reads a window in order.
type Reader struct {
	w    *Window
	next int64
	buf  []byte // the bytes of the frame Next returned last
}

// Next returns the next frame, waiting for it until ctx ends; io.EOF once
// the window is closed and read. The frame's bytes are the reader's until
// the next call to Next.
func (r *Reader) Next(ctx context.Context) (Frame, error) {
	w := r.w
	stop := context.AfterFunc(ctx, w.wake)
	defer stop()
	w.mu.Lock()
	defer w.mu.Unlock()
	for r.next >= w.base+int64(len(w.frames)) {
		switch {
		case ctx.Err() != nil:
			return Frame{}, context.Cause(ctx)
		case w.closed:
			return Frame{}, io.EOF
		}
		w.cond.Wait()
	}
	if r.next < w.base {
		return Frame{}, errors.New("bypass: window evicted a pinned frame") // cannot happen
	}
	h := w.frames[r.next-w.base]
	n := len(h.Payload) + len(h.MAC)
	if cap(r.buf) < n {
		r.buf = make([]byte, n)
	}
	f := place(h.Frame, r.buf[:n:n])
	r.next++
	w.cond.Broadcast()
	return f, nil
}

// Close unpins the reader.
func (r *Reader) Close() {
	r.w.mu.Lock()
	delete(r.w.pins, r)
	r.w.cond.Broadcast()
	r.w.mu.Unlock()
}
