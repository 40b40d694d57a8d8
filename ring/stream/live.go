package stream

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/herdproject/herd/ring/wire"
)

// LiveConn is a downstream data connection whose writes fail when the peer
// makes no progress for the timeout: the write blocks (the peer reads
// nothing) and the peer sent no KeepAlive in that time either. A peer that
// is merely slow, or itself waiting on its own child, keeps sending
// KeepAlives and is waited for.
type LiveConn struct {
	net.Conn
	timeout time.Duration
	heard   atomic.Int64  // unix nanoseconds of the last KeepAlive
	ended   chan struct{} // closed when the peer's side ended (EOF or error)
	writing atomic.Int32  // Writes in progress
}

// NewLiveConn wraps c and starts reading its KeepAlives.
func NewLiveConn(c net.Conn, timeout time.Duration) *LiveConn {
	l := &LiveConn{Conn: c, timeout: timeout, ended: make(chan struct{})}
	l.heard.Store(time.Now().UnixNano())
	go l.listen()
	return l
}

func (l *LiveConn) listen() {
	defer close(l.ended)
	var hb [wire.HeaderSize]byte
	for {
		h, err := wire.ReadHeader(l.Conn, &hb)
		if err != nil || h.Type != wire.TKeepAlive {
			return
		}
		l.heard.Store(time.Now().UnixNano())
	}
}

// Writing tells whether a Write is in progress: one that lasts is a write
// waiting for a slow or stopped peer, which it fails within the timeout
// once the peer stops sending KeepAlives.
func (l *LiveConn) Writing() bool { return l.writing.Load() > 0 }

// Write writes p, waiting as long as the peer says it is alive.
func (l *LiveConn) Write(p []byte) (int, error) {
	l.writing.Add(1)
	defer l.writing.Add(-1)
	total := 0
	for {
		_ = l.Conn.SetWriteDeadline(time.Now().Add(l.timeout))
		n, err := l.Conn.Write(p[total:])
		total += n
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return total, err
		}
		if since := time.Since(time.Unix(0, l.heard.Load())); since >= l.timeout {
			return total, err
		}
	}
}

// WriteBuffers writes b in as few system calls as the connection allows
// (writev on a TCP connection), waiting as Write does. It consumes b.
func (l *LiveConn) WriteBuffers(b *net.Buffers) (int64, error) {
	l.writing.Add(1)
	defer l.writing.Add(-1)
	var total int64
	for {
		_ = l.Conn.SetWriteDeadline(time.Now().Add(l.timeout))
		n, err := b.WriteTo(l.Conn)
		total += n
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return total, err
		}
		if since := time.Since(time.Unix(0, l.heard.Load())); since >= l.timeout {
			return total, err
		}
	}
}

// Finish ends a stream that was written whole: it half-closes the
// connection and waits until the peer closes its side, which a node does
// once it read the End frame, as long as the peer goes on sending
// KeepAlives. Closing a socket while the peer's KeepAlives sit unread in
// it would send a reset, and the peer would lose what it had not read
// yet: the tail of the stream.
func (l *LiveConn) Finish() error {
	if cw, ok := l.Conn.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil {
			return err
		}
	}
	t := time.NewTicker(max(l.timeout/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-l.ended:
			return nil
		case <-t.C:
			if since := time.Since(time.Unix(0, l.heard.Load())); since >= l.timeout {
				return fmt.Errorf("the peer did not confirm the end of the stream and sent nothing for %v", since.Round(time.Millisecond))
			}
		}
	}
}

// KeepAlive is the encoded KeepAlive frame.
var KeepAlive = func() []byte {
	b := make([]byte, wire.HeaderSize)
	wire.Header{Type: wire.TKeepAlive}.Put(b)
	return b
}()

// SendKeepAlives calls send (which writes KeepAlive upstream) every period
// while alive reports true, until stop closes.
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
