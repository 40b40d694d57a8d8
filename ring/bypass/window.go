package bypass

import (
	"context"
	"errors"
	"io"
	"sort"
	"sync"

	"github.com/herdproject/herd/ring/wire"
)

// DefaultWindow is the default window size in bytes: more than a chain
// link holds in flight (a node's pool and four socket buffers), so that a
// bypass seldom needs the sender.
const DefaultWindow = 64 << 20

// Window keeps the last frames of a stream, in order, up to a size. A
// Reader pins what it has not read yet: Add waits for a reader that lags
// more than the window (backpressure, as a slow child gives), and readers
// that stop are the rescuer's to drop.
type Window struct {
	mu     sync.Mutex
	cond   *sync.Cond
	frames []Frame
	base   int64 // sequence number of frames[0]
	bytes  int
	limit  int
	head   wire.Position // after the newest frame
	pins   map[*Reader]struct{}
	closed bool
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
		for w.bytes+f.size() > w.limit && len(w.frames) > 0 {
			if w.pinned() <= w.base {
				if ctx.Err() != nil {
					return context.Cause(ctx)
				}
				w.cond.Broadcast() // a reader may be waiting for what was added
				w.cond.Wait()
				continue
			}
			w.bytes -= w.frames[0].size()
			w.frames[0] = Frame{}
			w.frames = w.frames[1:]
			w.base++
		}
		if w.closed {
			return errClosed
		}
		w.frames = append(w.frames, f)
		w.bytes += f.size()
		w.head = f.H.After()
	}
	w.cond.Broadcast()
	return nil
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

// Range returns the frames that cover [from, to) when the window holds all
// of them (the first may begin before from, the last end after to).
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
	return append([]Frame(nil), w.frames[i:j]...), true
}

// Reader reads a window in order.
type Reader struct {
	w    *Window
	next int64
}

// Next returns the next frame, waiting for it until ctx ends; io.EOF once
// the window is closed and read.
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
	f := w.frames[r.next-w.base]
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
