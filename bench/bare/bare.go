// Package bare is the floor herd's benchmarks compare the ring with: the
// simplest relay chain that moves an image the way the ring does (a
// source sends a file to the first node; each node stores the stream
// and forwards it to the next), and does nothing else. There is no
// framing beyond an 8-byte length, no hashing, no verification, no
// bypass of dead nodes, no progress and one goroutine per process: what
// is left is the copying every relay must do (a socket read, a pwrite, a
// socket write), so herd's rate over this one's is the cost of
// everything herd adds.
//
// The protocol: the source sends the file's size as 8 bytes, big-endian,
// then the file. A node reads the stream in Block-sized reads, writes
// each block to its downstream node first (when it has one) and then to
// its output file with pwrite. When it has stored all of it (and
// fsync'd: herd's nodes do the same), and its downstream node has
// answered, it answers its upstream with one byte and ends. The source
// ends at that byte, so its run time covers the whole chain, as herd
// send's does. A connection that ends before its 8 bytes (a readiness
// probe) is ignored.
//
// The relay works as a C program would (dolly, socat): blocking
// sockets, one recv(MSG_WAITALL) per block, write and pwrite system
// calls, one goroutine on one P, so that Go's network poller and idle
// Ps are not part of the floor. Every data connection uses the
// congestion control herd uses (CUBIC by default), so that a system
// default such as BBR does not make the two differ in more than the
// code. The source reads and writes; it does not use sendfile, because
// herd's sender must read its input.
package bare

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Block is the default read size: herd's default -b.
const Block = 512 << 10

// Port is the default port of a node.
const Port = 9990

// dialTimeout bounds the connection to the next node.
const dialTimeout = 10 * time.Second

// Config is what a source or a node may change. The zero value is the
// default.
type Config struct {
	// Block is the size of each read in bytes; 0 means Block.
	Block int
	// Congestion is the TCP congestion control of the data connections;
	// "" means "cubic", as herd's default; "system" keeps the system's.
	// An algorithm the kernel lacks leaves the system's.
	Congestion string
}

func (c Config) block() int {
	if c.Block <= 0 {
		return Block
	}
	return c.Block
}

// tune sets the congestion control on conn.
func (c Config) tune(conn net.Conn) {
	alg := c.Congestion
	if alg == "" {
		alg = "cubic"
	}
	tc, ok := conn.(*net.TCPConn)
	if alg == "system" || !ok {
		return
	}
	if rc, err := tc.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			_ = unix.SetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION, alg)
		})
	}
}

// sock is a connection as a blocking file descriptor.
type sock struct {
	f    *os.File
	fd   int
	stop func() bool
}

// blocking turns c into a blocking descriptor (a dup of c's; c is closed)
// that ctx's end shuts down, which wakes a blocked recv or write.
func blocking(ctx context.Context, c net.Conn, cfg Config) (*sock, error) {
	defer c.Close()
	cfg.tune(c)
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil, fmt.Errorf("not a TCP connection: %T", c)
	}
	f, err := tc.File()
	if err != nil {
		return nil, err
	}
	s := &sock{f: f, fd: int(f.Fd())} // Fd makes it blocking
	s.stop = context.AfterFunc(ctx, func() { _ = unix.Shutdown(s.fd, unix.SHUT_RDWR) })
	return s, nil
}

func (s *sock) Close() error {
	s.stop()
	return s.f.Close()
}

// recv fills p (MSG_WAITALL: one system call, unless a signal cuts it
// short).
func (s *sock) recv(p []byte) error {
	for len(p) > 0 {
		n, _, err := unix.Recvfrom(s.fd, p, unix.MSG_WAITALL)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return err
		case n == 0:
			return io.ErrUnexpectedEOF
		}
		p = p[n:]
	}
	return nil
}

// write sends all of p.
func (s *sock) write(p []byte) error {
	for len(p) > 0 {
		n, err := unix.Write(s.fd, p)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// dial connects to addr.
func dial(ctx context.Context, addr string, cfg Config) (*sock, error) {
	d := net.Dialer{Timeout: dialTimeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return blocking(ctx, c, cfg)
}

// Send sends the file at path to the node at addr, and returns the bytes
// sent once the chain's last node has stored them.
func Send(ctx context.Context, path, addr string, cfg Config) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := fi.Size()
	conn, err := dial(ctx, addr, cfg)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(size))
	if err := conn.write(hdr[:]); err != nil {
		return 0, err
	}
	buf := make([]byte, cfg.block())
	var sent int64
	for sent < size {
		n, err := io.ReadFull(f, buf[:min(int64(len(buf)), size-sent)])
		if err != nil {
			return sent, fmt.Errorf("read %s: %w", path, err)
		}
		if err := conn.write(buf[:n]); err != nil {
			return sent, fmt.Errorf("send to %s: %w", addr, err)
		}
		sent += int64(n)
	}
	if err := conn.recv(hdr[:1]); err != nil {
		return sent, fmt.Errorf("%s did not confirm: %w", addr, err)
	}
	return sent, nil
}

// ErrProbe is why a connection without a stream was dropped.
var ErrProbe = errors.New("connection closed before the stream's length (a probe)")

// Node accepts one stream on ln (skipping probes), writes it to the file
// out (created or truncated) and, when next is not "", forwards it to the
// node at next. It returns the bytes stored once they are stored and the
// rest of the chain confirmed its part. ln is left open.
func Node(ctx context.Context, ln net.Listener, out, next string, cfg Config) (int64, error) {
	defer context.AfterFunc(ctx, func() { _ = ln.Close() })()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return 0, context.Cause(ctx)
			}
			return 0, err
		}
		up, err := blocking(ctx, c, cfg)
		if err != nil {
			return 0, err
		}
		n, err := relay(ctx, up, out, next, cfg)
		up.Close()
		if errors.Is(err, ErrProbe) {
			continue
		}
		if err != nil && ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, context.Cause(ctx))
		}
		return n, err
	}
}

// relay carries one stream from up.
func relay(ctx context.Context, up *sock, out, next string, cfg Config) (int64, error) {
	var hdr [8]byte
	if err := up.recv(hdr[:]); err != nil {
		return 0, ErrProbe
	}
	size := int64(binary.BigEndian.Uint64(hdr[:]))
	var down *sock
	if next != "" {
		var err error
		if down, err = dial(ctx, next, cfg); err != nil {
			return 0, err
		}
		defer down.Close()
		if err := down.write(hdr[:]); err != nil {
			return 0, fmt.Errorf("forward to %s: %w", next, err)
		}
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, cfg.block())
	var off int64
	for off < size {
		b := buf[:min(int64(len(buf)), size-off)]
		if err := up.recv(b); err != nil {
			return off, fmt.Errorf("receive at byte %d of %d: %w", off, size, err)
		}
		if down != nil {
			if err := down.write(b); err != nil {
				return off, fmt.Errorf("forward to %s: %w", next, err)
			}
		}
		if _, err := f.WriteAt(b, off); err != nil {
			return off, fmt.Errorf("write %s: %w", out, err)
		}
		off += int64(len(b))
	}
	if err := f.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return off, fmt.Errorf("fsync %s: %w", out, err)
	}
	if err := f.Close(); err != nil {
		return off, fmt.Errorf("close %s: %w", out, err)
	}
	if down != nil {
		if err := down.recv(hdr[:1]); err != nil {
			return off, fmt.Errorf("%s did not confirm: %w", next, err)
		}
	}
	if err := up.write([]byte{1}); err != nil {
		return off, fmt.Errorf("confirm upstream: %w", err)
	}
	return off, nil
}
