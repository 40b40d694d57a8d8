package bypass

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/herdproject/herd/ring/plan"
	"github.com/herdproject/herd/ring/stream"
	"github.com/herdproject/herd/ring/wire"
)

// Config is what a Rescuer needs to know about its session.
type Config struct {
	// Ring is every node in ring order and Fanout the tree's fanout: the
	// children of a stopped node are plan.Children of its index.
	Ring   []wire.Peer
	Fanout int
	// Timeout bounds each frame written to an adopted node and its resume
	// handshake; 0 means 5 seconds.
	Timeout time.Duration
	// SessionKey, when set, reseals frames cut at a resume position.
	SessionKey []byte
	// Window holds the frames this node passed on recently.
	Window *Window
	// Fetch gets the stream [from, to) from elsewhere (the sender) when
	// the window no longer holds it, calling emit for each frame in order.
	Fetch func(ctx context.Context, from, to wire.Position, emit func(Frame) error) error
	// Dial opens a resuming data connection (DataHello with Resume, and
	// the handshake) to a node's data address.
	Dial func(ctx context.Context, addr string) (*wire.Conn, error)
	// Excuse, when set, says when this node was last cut off itself (it
	// heard from no one): an adopted node's silence counts from then
	// (stream.LiveConn.SetExcuse).
	Excuse func() time.Time
	// Hold, when set, tells whether this node must not rescue anyone
	// now: it was cut off itself a moment ago, or lost its own upstream,
	// and its view of its children may be its own outage's. A bypass
	// waits until it no longer holds (at most adoptFor), and is dropped
	// if the session ends first (the node was bypassed itself).
	Hold func() bool
	// Report is told, once per node, that it stopped and why (the reason
	// starts with "reset", "timeout" or "auth failed").
	Report func(index int, reason string)
	// Logf receives messages for humans.
	Logf func(format string, args ...any)
}

// Rescuer adopts the children of nodes that stopped and feeds them.
type Rescuer struct {
	cfg     Config
	ctx     context.Context
	wg      sync.WaitGroup
	mu      sync.Mutex
	failed  map[int]bool
	feeding map[*stream.LiveConn]struct{} // connections to adopted nodes
}

// New returns a rescuer whose work ends with ctx.
func New(ctx context.Context, cfg Config) *Rescuer {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	return &Rescuer{cfg: cfg, ctx: ctx, failed: map[int]bool{}, feeding: map[*stream.LiveConn]struct{}{}}
}

// Reason classifies why a peer counts as stopped: "timeout" (no progress
// for the timeout), "auth failed", or "reset" (the connection broke or was
// refused).
func Reason(err error, timeout time.Duration) string {
	var ne net.Error
	switch {
	case errors.Is(err, wire.ErrAuth):
		return "auth failed: " + err.Error()
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("timeout: no progress for %v: %v", timeout, err)
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "reset: " + err.Error()
	}
	return "reset: " + err.Error()
}

// Bypass reports ring node i as stopped because of err and, in the
// background, connects to its children and feeds each from where it is.
// A node is bypassed once; its children that stopped too are bypassed in
// turn.
func (r *Rescuer) Bypass(i int, err error) {
	if errors.Is(err, stream.ErrTakenOver) {
		// This node was bypassed itself: another feeds the peer now.
		if i >= 0 && i < len(r.cfg.Ring) {
			r.cfg.Logf("stopped feeding %s: %v", r.cfg.Ring[i].Name, err)
		}
		return
	}
	if r.cfg.Hold != nil && r.cfg.Hold() {
		r.wg.Go(func() {
			end := time.Now().Add(adoptFor(r.cfg.Timeout))
			for r.cfg.Hold() {
				if time.Now().After(end) {
					if i >= 0 && i < len(r.cfg.Ring) {
						r.cfg.Logf("not bypassing %s (%v): this node has had no upstream of its own since", r.cfg.Ring[i].Name, err)
					}
					return
				}
				select {
				case <-r.ctx.Done():
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
			r.bypass(i, err)
		})
		return
	}
	r.bypass(i, err)
}

// bypass is Bypass once this node may rescue.
func (r *Rescuer) bypass(i int, err error) {
	r.mu.Lock()
	done := r.failed[i]
	r.failed[i] = true
	r.mu.Unlock()
	if done || i < 0 || i >= len(r.cfg.Ring) {
		return
	}
	reason := Reason(err, r.cfg.Timeout)
	r.cfg.Logf("bypassing %s: %s", r.cfg.Ring[i].Name, reason)
	if r.cfg.Report != nil {
		r.cfg.Report(i, reason)
	}
	for _, k := range plan.Children(len(r.cfg.Ring), r.cfg.Fanout, i) {
		r.wg.Go(func() { r.adopt(k) })
	}
}

// Writing tells whether the rescuer is writing to an adopted node: waiting
// on a slow or stopped one, which it will either get through to or bypass
// within the timeout.
func (r *Rescuer) Writing() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for l := range r.feeding {
		if l.Writing() {
			return true
		}
	}
	return false
}

// Wait waits until every adopted node got the whole stream or was
// bypassed in turn.
func (r *Rescuer) Wait() { r.wg.Wait() }

// errOurs marks failures on this side (the stream ended here, the sender
// cannot replay): they are not the adopted node's fault.
type errOurs struct{ error }

func (e errOurs) Unwrap() error { return e.error }

func (r *Rescuer) adopt(k int) {
	r.feedPeer(r.cfg.Ring[k], func(err error) {
		if NotItsFault(err) {
			// Logged by feedPeer; the node, left without an upstream,
			// reports its own failure.
			return
		}
		r.Bypass(k, err)
	})
}

// Join feeds a node that joins the session late, from where it is (the
// start, for a fresh one), in the background: a node outside the ring, fed
// as an adopted one is. fail is called when it cannot be fed to the end:
// because of the node (it stopped or refused), or, as NotItsFault tells,
// because of this side. Wait waits for it too.
func (r *Rescuer) Join(p wire.Peer, fail func(error)) {
	r.wg.Go(func() { r.feedPeer(p, fail) })
}

// NotItsFault tells whether a Join's failure is this side's (the stream
// ended here, the range the node needs cannot be had any more) rather
// than the fed node's.
func NotItsFault(err error) bool {
	var ours errOurs
	return errors.As(err, &ours)
}

// feedPeer connects to p, asks where it is and feeds it the rest of the
// stream; fail is told why when that does not work.
func (r *Rescuer) feedPeer(p wire.Peer, fail func(error)) {
	conn, pos, err := r.resume(p)
	// A node whose upstream is alive refuses: this side's belief that
	// the upstream stopped may be wrong (this node was cut off or frozen
	// itself), or early (the upstream froze, but what its kernel had
	// buffered still reaches the node). Ask again a few times; a node
	// that keeps its live feeder is not adopted, and not reported.
	asked := time.Now()
	for err != nil && refusedBecause(err, wire.ReasonUpstreamAlive) {
		if time.Since(asked) > adoptFor(r.cfg.Timeout) {
			r.cfg.Logf("not adopting %s: its upstream is alive", p.Name)
			return
		}
		select {
		case <-r.ctx.Done():
			return
		case <-time.After(r.cfg.Timeout / 2):
		}
		conn, pos, err = r.resume(p)
	}
	if err != nil && refusedBecause(err, wire.ReasonHaveAll) {
		r.cfg.Logf("not adopting %s: it has the whole stream", p.Name)
		return
	}
	if err != nil {
		fail(err)
		return
	}
	defer conn.Close()
	stop := context.AfterFunc(r.ctx, func() { conn.Close() })
	defer stop()
	r.cfg.Logf("adopted %s at %v", p.Name, pos)
	err = r.feed(conn, pos)
	switch {
	case err == nil:
		r.cfg.Logf("%s got the rest of the stream", p.Name)
	case r.ctx.Err() != nil:
	case NotItsFault(err):
		r.cfg.Logf("cannot go on feeding %s: %v", p.Name, err)
		fail(err)
	default:
		fail(fmt.Errorf("send to %s (%s): %w", p.Name, p.Addr, err))
	}
}

// adoptFor bounds how long a node whose upstream is alive is asked again
// (every half timeout): as long as a node waits for a new upstream once
// its own stopped (relay's upstream.wait), since a live upstream that
// was bypassed runs dry and stops.
func adoptFor(timeout time.Duration) time.Duration { return 3*timeout + 10*time.Second }

// refusedBecause tells whether err is the peer's refusal for reason.
func refusedBecause(err error, reason string) bool {
	var pe *wire.PeerError
	return errors.As(err, &pe) && pe.Reason == reason
}

// resume connects to an adopted node and reads where it is.
func (r *Rescuer) resume(p wire.Peer) (*wire.Conn, wire.Position, error) {
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.Timeout)
	defer cancel()
	conn, err := r.cfg.Dial(ctx, p.Addr)
	if err != nil {
		return nil, wire.Position{}, fmt.Errorf("resume %s (%s): %w", p.Name, p.Addr, err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(r.cfg.Timeout))
	var pos wire.Position
	if err := conn.Expect(wire.TPosition, &pos); err != nil {
		conn.Close()
		return nil, pos, fmt.Errorf("resume %s (%s): %w", p.Name, p.Addr, err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	return conn, pos, nil
}

// feed sends the stream from pos to the End frame.
func (r *Rescuer) feed(conn *wire.Conn, pos wire.Position) error {
	m := wire.NewFrameMAC(r.cfg.SessionKey)
	live := stream.NewLiveConn(conn, r.cfg.Timeout)
	if r.cfg.Excuse != nil {
		live.SetExcuse(r.cfg.Excuse)
	}
	// A node that stops while this side waits for frames is bypassed
	// then, not at the next write.
	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	go func() {
		select {
		case <-live.Dead():
			cancel()
		case <-ctx.Done():
		}
	}()
	r.mu.Lock()
	r.feeding[live] = struct{}{}
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.feeding, live)
		r.mu.Unlock()
	}()
	bw := bufio.NewWriterSize(live, 256<<10)
	write := func(f Frame) error {
		f, ok := f.From(pos, m)
		if !ok {
			return nil
		}
		if f.H.Before() != pos {
			return errOurs{fmt.Errorf("stream gap: have %v, need %v", f.H.Before(), pos)}
		}
		if f.H.Type == wire.TEnd {
			live.Ending()
		}
		if err := f.Write(bw); err != nil {
			return writeError{err}
		}
		pos = f.H.After()
		return nil
	}
	// Catch up from elsewhere while the window no longer holds pos,
	// without pinning it meanwhile: the ring goes on at its own pace and
	// the window moves on, so repeat until it holds where the node is (at
	// the latest when the stream ends and the window stops moving).
	var rd *Reader
	for {
		var start wire.Position
		var covered bool
		rd, start, covered = r.cfg.Window.Reader(pos)
		if covered {
			break
		}
		rd.Close()
		if r.cfg.Fetch == nil {
			return errOurs{fmt.Errorf("%v is no longer held here and there is no sender to fetch it from", pos)}
		}
		from := pos
		err := r.cfg.Fetch(r.ctx, pos, start, write)
		var we writeError
		switch {
		case errors.As(err, &we):
			return we.error
		case err != nil:
			return errOurs{fmt.Errorf("fetch %v up to %v from the sender: %w", from, start, err)}
		}
		if pos.Less(start) {
			return errOurs{fmt.Errorf("the sender's range ended at %v, not %v", pos, start)}
		}
	}
	defer rd.Close()
	for {
		f, err := r.next(ctx, rd, live, bw)
		if err == io.EOF {
			_ = bw.Flush()
			return errOurs{errors.New("the stream ended here before its end")}
		}
		var we writeError
		switch {
		case errors.As(err, &we):
			return we.error
		case err != nil && live.Err() != nil:
			return live.Err()
		case err != nil:
			return errOurs{err}
		}
		if err := write(f); err != nil {
			var we writeError
			if errors.As(err, &we) {
				return we.error
			}
			return err
		}
		if f.H.Type == wire.TEnd {
			if err := bw.Flush(); err != nil {
				return err
			}
			return live.Finish()
		}
		// Flush as the live stream does: a frame at a time, unless more
		// are already waiting.
		if rd.pending() == 0 {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
	}
}

// next returns the window's next frame. While none comes it tells the
// adopted node, every quarter of the timeout, that this side is alive.
func (r *Rescuer) next(ctx context.Context, rd *Reader, live *stream.LiveConn, bw *bufio.Writer) (Frame, error) {
	for {
		wctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout/4)
		f, err := rd.Next(wctx)
		cancel()
		if err == nil || ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
			if ctx.Err() != nil && err != nil {
				err = context.Cause(ctx)
			}
			return f, err
		}
		if err := bw.Flush(); err != nil {
			return Frame{}, writeError{err}
		}
		if err := live.KeepAlive(); err != nil {
			return Frame{}, writeError{err}
		}
	}
}

// writeError is a failure to send to the adopted node, passed through
// Fetch.
type writeError struct{ error }

func (e writeError) Unwrap() error { return e.error }

// pending is how many frames wait for the reader.
func (r *Reader) pending() int64 {
	r.w.mu.Lock()
	defer r.w.mu.Unlock()
	return r.w.base + int64(len(r.w.frames)) - r.next
}
