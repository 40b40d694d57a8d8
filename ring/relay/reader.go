package relay

import (
	"net"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// frameBuf is the size of a frameReader's buffer: headers and MACs go
// through it, payloads only as far as they come along with them.
const frameBuf = 4 << 10

// maxLowat bounds what a frameReader asks the kernel to gather before it
// wakes the reader.
const maxLowat = 1 << 20

// frameReader reads a data connection's frames: headers and MACs through a
// small buffer, payloads (reads at least as large as the buffer) straight
// into the caller's chunk, so that each byte is copied once. Told how many
// bytes the frame being read still owes (expect), it asks the kernel
// (SO_RCVLOWAT) to wake it only once that much has arrived, rather than at
// every packet: those bytes are due, and a peer that breaks off wakes it
// with its end of stream, a reset or the read deadline.
type frameReader struct {
	conn  net.Conn
	sock  syscall.RawConn // nil: the connection has no socket to tune
	buf   []byte
	r, w  int // buffered bytes: buf[r:w]
	owed  int // bytes due beyond the buffered ones
	lowat int // SO_RCVLOWAT as last set
	// stats, when set, counts what the reader takes from the connection.
	stats *readStats
}

// readStats is what a node's frame readers share with its KeepAlives and
// progress reports.
type readStats struct {
	// reading is true while a reader waits for its connection: the node
	// waits for its upstream, which is not a node that stopped.
	reading atomic.Bool
	// taken is the bytes read from upstream connections so far: with
	// what waits in the current one's socket (queued), what arrived at
	// the node, byte by byte, for rates that are true on slow links too.
	taken atomic.Int64
}

func newFrameReader(c net.Conn, stats *readStats) *frameReader {
	if dc, ok := c.(dataConn); ok {
		c = dc.Conn.Conn
	}
	fr := &frameReader{conn: c, buf: make([]byte, frameBuf), lowat: 1, stats: stats}
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			fr.sock = rc
		}
	}
	return fr
}

// expect says that the next n bytes of the stream are due: the rest of a
// frame whose header was read, or a header.
func (fr *frameReader) expect(n int) { fr.owed = max(n-(fr.w-fr.r), 0) }

// Read reads from the buffer, or else from the connection: straight into
// p when p is at least as large as the buffer.
func (fr *frameReader) Read(p []byte) (int, error) {
	if fr.r < fr.w {
		n := copy(p, fr.buf[fr.r:fr.w])
		fr.r += n
		return n, nil
	}
	if len(p) >= len(fr.buf) {
		return fr.read(p)
	}
	n, err := fr.read(fr.buf)
	fr.r, fr.w = 0, n
	k := copy(p, fr.buf[:n])
	fr.r = k
	return k, err
}

// read reads from the connection into p, once at least the bytes still
// owed (or p's size, if smaller) arrived.
func (fr *frameReader) read(p []byte) (int, error) {
	fr.setLowat(min(fr.owed, len(p), maxLowat))
	if fr.stats != nil {
		fr.stats.reading.Store(true)
		defer fr.stats.reading.Store(false)
	}
	n, err := fr.conn.Read(p)
	if fr.stats != nil {
		fr.stats.taken.Add(int64(n))
	}
	fr.owed = max(fr.owed-n, 0)
	return n, err
}

// setLowat sets SO_RCVLOWAT to n (at least 1) when it differs from the
// last value. Failing that, reads wake at every packet, as by default.
func (fr *frameReader) setLowat(n int) {
	n = max(n, 1)
	if fr.sock == nil || n == fr.lowat {
		return
	}
	fr.lowat = n
	_ = fr.sock.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVLOWAT, n) != nil {
			fr.sock = nil
		}
	})
}

// queued is the number of bytes waiting in c's socket receive queue
// (SIOCINQ), 0 when c has no socket.
func queued(c net.Conn) int64 {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	var n int
	_ = rc.Control(func(fd uintptr) {
		n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	})
	return int64(n)
}
