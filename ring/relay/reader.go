package relay

import (
	"net"
	"sync/atomic"
	"syscall"
	"time"

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
	// heard is when bytes last came from upstream (Unix nanoseconds).
	heard atomic.Int64
	// waitingSince is when the read in progress began (0: none), and
	// cutEnd when the last read that waited gap or longer ended: the
	// node heard nothing from upstream meanwhile, which a live upstream
	// never lets happen (it sends KeepAlives).
	waitingSince, cutEnd atomic.Int64
	gap                  atomic.Int64 // a time.Duration
	// grew is when the bytes that arrived (read, or waiting in the
	// socket: a frame's first part waits there while the reader waits
	// for the rest) last grew by a KiB or more, as upstream.arrived saw
	// them; fed when the node last read a frame other than a KeepAlive.
	grew, fed atomic.Int64
}

// lastFed is when upstream last moved the stream on: a frame read, or
// more of one arriving. KeepAlives do not count: an upstream stuck on
// its own disk still sends them.
func (s *readStats) lastFed() time.Time {
	return time.Unix(0, max(s.fed.Load(), s.grew.Load()))
}

// lastSign is when upstream last gave a sign of life: bytes read, or more
// bytes waiting in the socket.
func (s *readStats) lastSign() time.Time {
	return time.Unix(0, max(s.heard.Load(), s.grew.Load()))
}

// cutOff says when the node was last cut off (its own link down): now
// while a read has waited gap or longer and nothing more arrived for as
// long, else the end of the last read that waited gap or longer; zero if
// none.
func (s *readStats) cutOff() time.Time {
	gap := time.Duration(s.gap.Load())
	if gap <= 0 {
		return time.Time{}
	}
	if w := s.waitingSince.Load(); w != 0 && time.Since(time.Unix(0, w)) >= gap && time.Since(s.lastSign()) >= gap {
		return time.Now()
	}
	if e := s.cutEnd.Load(); e != 0 {
		return time.Unix(0, e)
	}
	return time.Time{}
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
	var began time.Time
	if fr.stats != nil {
		began = time.Now()
		fr.stats.reading.Store(true)
		fr.stats.waitingSince.Store(began.UnixNano())
		defer fr.stats.reading.Store(false)
		defer fr.stats.waitingSince.Store(0)
	}
	n, err := fr.conn.Read(p)
	if fr.stats != nil && n > 0 {
		now := time.Now()
		fr.stats.taken.Add(int64(n))
		fr.stats.heard.Store(now.UnixNano())
		// Nothing arrived for gap or longer while the read waited (bytes
		// trickling into the socket are signs of life too).
		sign := time.Unix(0, max(began.UnixNano(), fr.stats.grew.Load()))
		if gap := time.Duration(fr.stats.gap.Load()); gap > 0 && now.Sub(sign) >= gap {
			fr.stats.cutEnd.Store(now.UnixNano())
		}
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
