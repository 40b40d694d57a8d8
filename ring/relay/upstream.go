package relay

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/herdproject/herd/ring/wire"
)

// dataConn is an accepted, authenticated data connection.
type dataConn struct {
	*wire.Conn
	from   string
	resume bool // a node taking over from an upstream that stopped
}

// upstream is where a session's stream comes from: the first data
// connection, then each one a node opens to take over after the current
// upstream stopped (bypass). A resuming connection interrupts the current
// one, which may be stalled rather than closed.
type upstream struct {
	ch  chan dataConn
	mu  sync.Mutex
	cur *wire.Conn
	// live is cur once told where to resume: KeepAlives go there.
	live *wire.Conn
	// wait bounds how long the node waits for a new upstream after the
	// current one broke; bypass is the session's bypass timeout.
	wait, bypass time.Duration
	// silence is how long the upstream may send nothing, not even a
	// KeepAlive, before the node counts it as stopped; 0 waits forever.
	silence time.Duration
	// stats count what the node's readers take from upstream.
	stats readStats
	// downstream, when set, tells whether the node is writing to a child
	// (or an adopted node) it has not given up on: blocked by it, not
	// dead itself.
	downstream func() bool
	// broken is set while the node knows its upstream lost (it waits
	// for another), complete once the whole stream came.
	broken, complete bool
	// grewFrom is what arrived() counted when it last saw it grow by a
	// KiB or more.
	grewFrom int64
}

func newUpstream() *upstream { return &upstream{ch: make(chan dataConn, 4)} }

// offer hands a new data connection to the session. The first one is
// taken; a resuming one (a node taking over from an upstream that
// stopped) only when the current upstream is gone or has not moved the
// stream on for half the bypass timeout: a node that believes wrongly
// that this one's upstream stopped (it was cut off itself, or frozen)
// must not take it from a live feeder. It returns why it refused, or "".
func (u *upstream) offer(c dataConn) string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.cur != nil && !c.resume {
		return "a second data connection"
	}
	if c.resume && u.cur != nil {
		switch {
		case u.complete:
			return wire.ReasonHaveAll
		case !u.broken && u.fedWithin(u.bypass/2):
			return wire.ReasonUpstreamAlive
		}
	}
	select {
	case u.ch <- c:
	default:
		return "too many data connections"
	}
	if c.resume && u.cur != nil {
		retire(u.cur, "taken over by "+c.from)
	}
	return ""
}

// fedWithin tells whether the current upstream moved the stream on
// within d (readStats.lastFed).
func (u *upstream) fedWithin(d time.Duration) bool {
	u.arrivedLocked()
	return time.Since(u.stats.lastFed()) < d
}

// cutOff says when this node was last cut off itself (readStats.cutOff):
// its children's silence counts from then. Once the whole stream came, it
// cannot tell, and does not excuse.
func (u *upstream) cutOff() time.Time {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.complete {
		return time.Time{}
	}
	u.arrivedLocked()
	return u.stats.cutOff()
}

// hold tells whether this node must not rescue its children now
// (bypass.Config.Hold): it waits for a new upstream, or was cut off
// within the last bypass timeout.
func (u *upstream) hold() bool {
	if u.isBroken() {
		return true
	}
	cut := u.cutOff()
	return !cut.IsZero() && time.Since(cut) < u.bypass
}

func (u *upstream) isBroken() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.broken && !u.complete
}

// retire tells an upstream that was replaced why, so that it does not
// take this node for one that stopped, and closes the connection once the
// message had time to get there first: closing a socket with unread
// bytes in it sends a reset, which could overtake the message.
func retire(c *wire.Conn, reason string) {
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_ = c.WriteMsg(wire.TAbort, wire.Abort{Reason: reason})
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	time.AfterFunc(retireDelay, func() { c.Close() })
}

// retireDelay is how long a replaced upstream's connection stays open
// after the message that says so.
const retireDelay = 200 * time.Millisecond

// take waits up to d for a data connection and makes it current.
func (u *upstream) take(ctx context.Context, d time.Duration) (dataConn, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case c := <-u.ch:
		u.mu.Lock()
		u.cur, u.broken = c.Conn, false
		u.mu.Unlock()
		now := time.Now().UnixNano()
		u.stats.heard.Store(now)
		u.stats.fed.Store(now)
		return c, nil
	case <-ctx.Done():
		return dataConn{}, context.Cause(ctx)
	case <-t.C:
		return dataConn{}, errNoUpstream
	}
}

var errNoUpstream = errors.New("no upstream connection")

// keepAlive tells the current upstream that this node is alive and has
// received so many stream bytes (an acknowledgement).
func (u *upstream) keepAlive(d time.Duration, received int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.live != nil {
		_ = u.live.SetWriteDeadline(time.Now().Add(d))
		_ = u.live.WriteKeepAlive(0, uint64(received))
	}
}

// setLive makes c the connection KeepAlives go to.
func (u *upstream) setLive(c *wire.Conn) {
	u.mu.Lock()
	u.live = c
	u.mu.Unlock()
}

// finished tells upstream c that the whole stream arrived: no more
// KeepAlives, and c half-closed, which the upstream waits for before it
// closes its side (stream.LiveConn.Finish).
func (u *upstream) finished(c dataConn) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.complete = true
	if u.live == c.Conn {
		u.live = nil
	}
	if cw, ok := c.Conn.Conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

// lose marks the current upstream lost: the node waits for another.
func (u *upstream) lose() {
	u.mu.Lock()
	u.broken = true
	u.mu.Unlock()
}

// arrived is the stream bytes (frames' headers and MACs included) that
// arrived at the node: read from upstream, or waiting in the current
// upstream's socket.
func (u *upstream) arrived() int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.arrivedLocked()
}

// arrivedLocked is arrived with u.mu held; it records when the count
// last grew (the node's progress reports call it a few times a second).
func (u *upstream) arrivedLocked() int64 {
	n := u.stats.taken.Load()
	if u.cur != nil {
		n += queued(u.cur.Conn)
	}
	if n-u.grewFrom >= 1<<10 {
		u.grewFrom = n
		u.stats.grew.Store(time.Now().UnixNano())
	}
	return n
}

// close closes the current connection and any not taken.
func (u *upstream) close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.cur != nil {
		u.cur.Close()
	}
	for {
		select {
		case c := <-u.ch:
			c.Close()
		default:
			return
		}
	}
}

// lost marks a read failure the node survives by waiting for another
// upstream: the connection broke, stalled or ended early.
type lost struct{ error }

func (e lost) Unwrap() error { return e.error }

// streamPos is where a node is in the stream: the next frame it needs.
type streamPos struct {
	file   uint32 // the file being received, when inFile
	next   uint32 // the next file to start
	inFile bool
	off    uint64
}

func (p streamPos) position() wire.Position {
	if p.inFile {
		return wire.Position{File: p.file, Started: true, Offset: p.off}
	}
	return wire.Position{File: p.next}
}

// advance checks that h is the frame expected at p (files and offsets in
// order: the writer relies on it) and returns the position after it.
func (p streamPos) advance(h wire.Header, nfiles int, chunkSize int) (streamPos, error) {
	switch h.Type {
	case wire.TFileStart:
		if p.inFile || h.File != p.next || int(h.File) >= nfiles {
			return p, fmt.Errorf("protocol: unexpected start of file %d", h.File+1)
		}
		p.file, p.inFile, p.off = h.File, true, 0
		p.next++
	case wire.TData, wire.THole:
		if !p.inFile || h.File != p.file || h.Offset != p.off {
			return p, fmt.Errorf("protocol: %s frame for file %d at offset %d, expected file %d at %d", h.Type, h.File+1, h.Offset, p.file+1, p.off)
		}
		if h.Type == wire.TData && int(h.Length) > chunkSize {
			return p, fmt.Errorf("protocol: data frame of %d bytes exceeds the chunk size %d", h.Length, chunkSize)
		}
		p.off += uint64(h.Length)
	case wire.TFileEnd:
		if !p.inFile || h.File != p.file || h.Offset != p.off {
			return p, fmt.Errorf("protocol: end of file %d at %d, expected file %d at %d", h.File+1, h.Offset, p.file+1, p.off)
		}
		p.inFile = false
	case wire.TEnd:
		if p.inFile || int(p.next) != nfiles {
			return p, fmt.Errorf("protocol: end of session after %d of %d files", p.next, nfiles)
		}
	default:
		return p, fmt.Errorf("protocol: unexpected %s frame on the data connection", h.Type)
	}
	return p, nil
}

// switchTo makes c the upstream: a resuming node is told where this node
// is. It returns the reader for c.
func switchTo(c dataConn, at wire.Position, stats *readStats) (*frameReader, error) {
	if c.resume {
		_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := c.WriteMsg(wire.TPosition, at); err != nil {
			c.Close()
			return nil, fmt.Errorf("tell %s (%s) where to resume: %w", c.from, c.RemoteAddr(), err)
		}
		_ = c.SetWriteDeadline(time.Time{})
	}
	return newFrameReader(c, stats), nil
}
