package stream

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herdproject/herd/ring/wire"
)

// LiveConn is a downstream data connection whose peer is watched for
// liveness by what the peer itself says, not by writes that block: a peer
// sends a KeepAlive, carrying how many stream bytes it received, every
// quarter of the timeout while it runs and its pipeline moves (or waits
// for data, or for a child of its own that it has not given up on). A
// peer that says nothing for the timeout is dead, wherever the stream is:
// also when all that is left of it fits in the kernel's socket buffers
// and no write would ever block, and also when nothing is being written
// at all. The connection is then closed, and every write and Finish fail
// with a StallError.
//
// A timeout of 0 never declares the peer dead (writes wait for it as long
// as it takes); a peer that closes or resets still fails the writes.
type LiveConn struct {
	*wire.Conn
	timeout time.Duration
	heard   atomic.Int64  // unix nanoseconds of the last KeepAlive
	acked   atomic.Int64  // stream bytes the peer said it received
	ended   chan struct{} // closed when the peer's side ended (EOF)
	writing atomic.Int32  // writes in progress
	endSent atomic.Bool   // the End frame is going out: the peer may end

	dead    chan struct{}
	dieOnce sync.Once
	err     error // why the peer is dead, set before dead closes
	// excuse, when set, says when this side was last cut off itself.
	excuse atomic.Pointer[func() time.Time]
}

// SetExcuse sets how this side says when it was last cut off itself (it
// heard nothing from anyone: its own link was down): now while it is, the
// end of its last such spell after it, zero if never. The peer's silence
// counts only from then: TCP brings the peer's words after an outage
// later than the outage's end, backing off its retransmissions.
func (l *LiveConn) SetExcuse(f func() time.Time) { l.excuse.Store(&f) }

// ErrTakenOver: the peer has a new upstream, a node that took over from
// this one (which the ring bypassed). It is not the peer's failure.
var ErrTakenOver = errors.New("another node took over feeding the peer")

// StallError says that a peer sent no KeepAlive for the timeout. It is a
// timeout (net.Error), as the bypass classifies it.
type StallError struct {
	Silent time.Duration
}

func (e *StallError) Error() string {
	return fmt.Sprintf("no acknowledgement or heartbeat from the peer for %v", e.Silent.Round(time.Millisecond))
}

// Timeout implements net.Error.
func (e *StallError) Timeout() bool { return true }

// Temporary implements net.Error.
func (e *StallError) Temporary() bool { return false }

// NewLiveConn wraps c, starts reading its KeepAlives and, with a timeout,
// watching for them.
func NewLiveConn(c *wire.Conn, timeout time.Duration) *LiveConn {
	l := &LiveConn{Conn: c, timeout: timeout, ended: make(chan struct{}), dead: make(chan struct{})}
	l.heard.Store(time.Now().UnixNano())
	go l.listen()
	if timeout > 0 {
		go l.watch()
	}
	return l
}

// listen reads the peer's KeepAlives until its side ends. A forged or
// replayed KeepAlive, or any other frame, kills the connection.
func (l *LiveConn) listen() {
	for {
		h, body, err := l.ReadMsg()
		switch {
		case err == nil && h.Type == wire.TKeepAlive:
			l.heard.Store(time.Now().UnixNano())
			l.acked.Store(int64(h.Offset))
			continue
		case err == nil && h.Type == wire.TAbort:
			var f wire.Fail
			_ = json.Unmarshal(body, &f)
			l.die(fmt.Errorf("%w: %s", ErrTakenOver, f.Reason))
		case err == nil:
			l.die(fmt.Errorf("protocol: unexpected %s frame from a downstream peer", h.Type))
		case errors.Is(err, io.EOF):
			close(l.ended)
			return
		case errors.Is(err, wire.ErrAuth):
			l.die(fmt.Errorf("%w (from %s): dropped the connection", err, l.RemoteAddr()))
		default:
			// A reset or a closed connection: the writes say so.
			l.die(err)
		}
		close(l.ended)
		return
	}
}

// watch declares the peer dead when it sends no KeepAlive for the
// timeout, or when it ends its side before the End frame went out.
func (l *LiveConn) watch() {
	tick := max(l.timeout/8, 5*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-l.dead:
			return
		case <-l.ended:
			if !l.endSent.Load() {
				l.die(errors.New("the peer closed the connection before the end of the stream"))
			}
			return
		case <-t.C:
			// Woken far too late, this process did not run (stopped,
			// frozen, starved): the silence is its own, not the
			// peer's. Count it from now.
			if now := time.Now(); now.Sub(last) > max(l.timeout/2, 4*tick) {
				l.heard.Store(now.UnixNano())
			}
			last = time.Now()
			if since := time.Since(l.Heard()); since >= l.timeout && time.Since(l.excused()) < l.timeout {
				// Not the peer's silence: this side's own.
			} else if since >= l.timeout {
				l.die(&StallError{Silent: since})
				return
			}
		}
	}
}

// excused is when this side was last cut off itself (SetExcuse).
func (l *LiveConn) excused() time.Time {
	if f := l.excuse.Load(); f != nil {
		return (*f)()
	}
	return time.Time{}
}

// die records why the peer is dead and closes the connection, which ends
// the writes waiting for it.
func (l *LiveConn) die(err error) {
	l.dieOnce.Do(func() {
		l.err = err
		close(l.dead)
		_ = l.Conn.Close()
	})
}

// Dead is closed once the peer counts as dead (Err says why).
func (l *LiveConn) Dead() <-chan struct{} { return l.dead }

// Err is why the peer counts as dead, nil while it does not.
func (l *LiveConn) Err() error {
	select {
	case <-l.dead:
		return l.err
	default:
		return nil
	}
}

// Heard is when the peer's last KeepAlive arrived (or the connection was
// made).
func (l *LiveConn) Heard() time.Time { return time.Unix(0, l.heard.Load()) }

// Acked is how many stream bytes the peer last said it received.
func (l *LiveConn) Acked() int64 { return l.acked.Load() }

// Writing tells whether a write is in progress: one that lasts is a write
// waiting for a slow or stopped peer, which fails within the timeout once
// the peer stops sending KeepAlives.
func (l *LiveConn) Writing() bool { return l.writing.Load() > 0 && l.Err() == nil }

// Ending says that the End frame is about to be written: from then on the
// peer may end its side.
func (l *LiveConn) Ending() { l.endSent.Store(true) }

// failed is a write's error: the peer's death when that is what ended it.
func (l *LiveConn) failed(err error) error {
	if err == nil {
		return nil
	}
	if derr := l.Err(); derr != nil {
		return derr
	}
	// A peer that was taken over says so before it closes; the reset
	// that follows can fail a write before the message is read. Give
	// the reader a moment to read it.
	select {
	case <-l.ended:
	case <-time.After(abortGrace):
	}
	if derr := l.Err(); derr != nil {
		return derr
	}
	return err
}

// abortGrace is how long a failed write waits for the peer's last words.
const abortGrace = 300 * time.Millisecond

// Write writes p, waiting as long as the peer says it is alive.
func (l *LiveConn) Write(p []byte) (int, error) {
	l.writing.Add(1)
	defer l.writing.Add(-1)
	if err := l.Err(); err != nil {
		return 0, err
	}
	n, err := l.Conn.Write(p)
	return n, l.failed(err)
}

// WriteBuffers writes b in as few system calls as the connection allows
// (writev on a TCP connection), waiting as Write does. It consumes b.
func (l *LiveConn) WriteBuffers(b *net.Buffers) (int64, error) {
	l.writing.Add(1)
	defer l.writing.Add(-1)
	if err := l.Err(); err != nil {
		return 0, err
	}
	n, err := b.WriteTo(l.Conn.Conn)
	return n, l.failed(err)
}

// KeepAlive tells the peer that this side is alive while it has nothing
// to send (the peer's upstream is not silent, so it does not give up on
// it). The caller writes it between whole frames.
func (l *LiveConn) KeepAlive() error {
	_, err := l.Write(l.EncodeKeepAlive(0, 0))
	return err
}

// Finish ends a stream that was written whole: it half-closes the
// connection and waits until the peer closes its side, which a node does
// once it read the End frame, as long as the peer goes on sending
// KeepAlives. Closing a socket while the peer's KeepAlives sit unread in
// it would send a reset, and the peer would lose what it had not read
// yet: the tail of the stream.
func (l *LiveConn) Finish() error {
	l.Ending()
	if cw, ok := l.Conn.Conn.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil {
			select {
			case <-l.ended:
				// The peer read the whole stream and closed already.
			default:
				return l.failed(err)
			}
		}
	}
	select {
	case <-l.ended:
		if err := l.Err(); err != nil {
			return fmt.Errorf("the peer did not confirm the end of the stream: %w", err)
		}
		return nil
	case <-l.dead:
		return fmt.Errorf("the peer did not confirm the end of the stream: %w", l.Err())
	}
}

// SendKeepAlives calls send (which writes a KeepAlive upstream) every
// period while alive reports true, until stop closes.
func SendKeepAlives(send func(), period time.Duration, alive func() bool, stop <-chan struct{}) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if alive() {
				send()
			}
		}
	}
}
