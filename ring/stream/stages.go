package stream

import (
	"encoding/hex"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herdproject/herd/ring/digest"
	"github.com/herdproject/herd/ring/wire"
)

// Forwarder sends every chunk's frames to one downstream peer. A peer that
// fails is marked dead and later chunks are only released, so one dead
// child never stalls its siblings or the local disk. The peer counts as
// dead when it sends no KeepAlive for the timeout (see LiveConn), however
// much of the stream the socket buffers still take; while the forwarder
// has nothing to send it tells the peer it is alive itself, so that the
// peer waits for it rather than for a node to take over.
type Forwarder struct {
	// Name is the peer's name for messages.
	Name string
	// OnFail, when set (before the first chunk is dispatched), is called
	// once, from the forwarder's goroutine, when the peer fails: the ring
	// bypasses it. It must not block.
	OnFail func(error)
	conn   *LiveConn
	in     chan *Chunk
	done   chan struct{}
	closed chan struct{} // Close returned
	// timeout is how long the peer may send no KeepAlive; 0 waits forever.
	timeout time.Duration
	// heartbeat is how long the forwarder may send nothing before it
	// sends a KeepAlive.
	heartbeat time.Duration

	ended bool // the End frame went out (run's, then Close's after done)

	mu   sync.Mutex
	err  error
	sent atomic.Int64
}

// NewForwarder starts a forwarder to conn with a queue of depth chunks.
// timeout, when > 0, is how long the peer may send no KeepAlive before it
// counts as stalled (see LiveConn); heartbeat, when > 0, is how long the
// forwarder may write nothing before it sends a KeepAlive of its own.
func NewForwarder(name string, conn *wire.Conn, depth int, timeout, heartbeat time.Duration) *Forwarder {
	f := &Forwarder{
		Name: name, conn: NewLiveConn(conn, timeout), in: make(chan *Chunk, depth),
		done: make(chan struct{}), closed: make(chan struct{}), timeout: timeout, heartbeat: heartbeat,
	}
	go f.run()
	go func() {
		select {
		case <-f.conn.Dead():
			f.fail(fmt.Errorf("send to %s: %w", f.Name, f.conn.Err()))
		case <-f.closed:
		}
	}()
	return f
}

// In implements Stage.
func (f *Forwarder) In() chan<- *Chunk { return f.in }

// SetExcuse sets the test of whether this side is the one cut off
// (LiveConn.SetExcuse).
func (f *Forwarder) SetExcuse(excuse func() time.Time) { f.conn.SetExcuse(excuse) }

func (f *Forwarder) run() {
	defer close(f.done)
	bufs := make(net.Buffers, 0, 16)
	var tick <-chan time.Time
	if f.heartbeat > 0 {
		t := time.NewTicker(f.heartbeat / 2)
		defer t.Stop()
		tick = t.C
	}
	last := time.Now()
	for {
		var c *Chunk
		select {
		case c = <-f.in:
		case now := <-tick:
			// Nothing follows the End frame: the peer reads no further.
			if now.Sub(last) >= f.heartbeat && f.Err() == nil && !f.ended {
				if err := f.conn.KeepAlive(); err != nil {
					f.fail(fmt.Errorf("send to %s: %w", f.Name, err))
				}
				last = now
			}
			continue
		}
		if c == nil {
			return
		}
		if f.Err() == nil {
			bufs = bufs[:0]
			for i := range c.Segs {
				bufs = append(bufs, c.Header(i))
				if p := c.Payload(i); len(p) > 0 {
					bufs = append(bufs, p)
				}
				if m := c.MAC(i); m != nil {
					bufs = append(bufs, m)
				}
			}
			end := false
			if k := len(c.Segs); k > 0 && c.Segs[k-1].H.Type == wire.TEnd {
				end = true
				f.conn.Ending()
			}
			if n, err := f.conn.WriteBuffers(&bufs); err != nil {
				f.fail(fmt.Errorf("send to %s: %w", f.Name, err))
			} else {
				f.sent.Add(n)
				f.ended = end
			}
			last = time.Now()
		}
		c.Release()
	}
}

func (f *Forwarder) fail(err error) {
	f.mu.Lock()
	first := f.err == nil
	if first {
		f.err = err
		_ = f.conn.Close()
	}
	f.mu.Unlock()
	if first && f.OnFail != nil {
		f.OnFail(err)
	}
}

// Err is the first error sending to the peer, nil while it is healthy.
func (f *Forwarder) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// Writing tells whether the forwarder is writing to a peer it has not
// given up on: waiting on a slow or stopped child, which it will either
// get through to or bypass within its timeout.
func (f *Forwarder) Writing() bool { return f.conn.Writing() && f.Err() == nil }

// Sent is the number of bytes (headers included) sent so far.
func (f *Forwarder) Sent() int64 { return f.sent.Load() }

// Close waits until every queued chunk went out, then returns the first
// error. When the End frame went out and the peer is watched (a timeout),
// it also waits until the peer confirms it read the whole stream
// (LiveConn.Finish); a peer that stops meanwhile fails (OnFail). It does
// not close the connection.
func (f *Forwarder) Close() error {
	close(f.in)
	<-f.done
	if f.timeout > 0 && f.ended && f.Err() == nil {
		if err := f.conn.Finish(); err != nil {
			f.fail(fmt.Errorf("send to %s: %w", f.Name, err))
		}
	}
	close(f.closed)
	return f.Err()
}

// Sum is one file's digest as a stage computed it.
type Sum struct {
	Bytes  int64
	Digest []byte
}

// Hex is the digest in hex.
func (s Sum) Hex() string { return hex.EncodeToString(s.Digest) }

// Hasher computes the digest of every file's stream (package digest),
// holes as zeros, in a goroutine of its own (digest.NewAsync). On a
// machine of four cores or more the tree digest's leaves are hashed by
// digest.Workers goroutines besides: a chunk goes back to its pool once
// they hashed it.
type Hasher struct {
	in   chan *Chunk
	done chan struct{}

	h    digest.Async
	mu   sync.Mutex
	sums map[uint32]Sum
}

// NewHasher starts a hasher computing alg with a queue of depth chunks.
func NewHasher(depth int, alg digest.Alg) *Hasher {
	return newHasher(depth, alg, digest.Workers())
}

func newHasher(depth int, alg digest.Alg, workers int) *Hasher {
	h := &Hasher{in: make(chan *Chunk, depth), done: make(chan struct{}), h: digest.NewAsync(alg, workers), sums: map[uint32]Sum{}}
	go h.run()
	return h
}

// In implements Stage.
func (h *Hasher) In() chan<- *Chunk { return h.in }

func (h *Hasher) run() {
	defer close(h.done)
	defer h.h.Close()
	for c := range h.in {
		for i, s := range c.Segs {
			switch s.H.Type {
			case wire.TFileStart:
				h.h.Reset()
			case wire.TData:
				c.Hold() // until it is hashed
				h.h.Write(c.Payload(i), c.Release)
			case wire.THole:
				h.h.Zeros(int64(s.H.Length))
			case wire.TFileEnd:
				sum := Sum{Bytes: h.h.Len(), Digest: h.h.Finish(nil)}
				h.mu.Lock()
				h.sums[s.H.File] = sum
				h.mu.Unlock()
			}
		}
		c.Release()
	}
}

// Close waits for the queued chunks to be hashed.
func (h *Hasher) Close() {
	close(h.in)
	<-h.done
}

// Sum returns file's digest once its FileEnd was hashed.
func (h *Hasher) Sum(file uint32) (Sum, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.sums[file]
	return s, ok
}
