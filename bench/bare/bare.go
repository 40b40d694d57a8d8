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
// Every data connection uses the congestion control herd uses (CUBIC by
// default), so that a system default such as BBR does not make the two
// differ in more than the code. The source reads and writes; it does not
// use sendfile, because herd's sender must read its input.
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

// closeOnDone closes c when ctx ends; call the result to stop that.
func closeOnDone(ctx context.Context, c io.Closer) func() bool {
	return context.AfterFunc(ctx, func() { _ = c.Close() })
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
	d := net.Dialer{Timeout: dialTimeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	defer closeOnDone(ctx, conn)()
	cfg.tune(conn)
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(size))
	if _, err := conn.Write(hdr[:]); err != nil {
		return 0, err
	}
	buf := make([]byte, cfg.block())
	var sent int64
	for sent < size {
		n, err := io.ReadFull(f, buf[:min(int64(len(buf)), size-sent)])
		if err != nil {
			return sent, fmt.Errorf("read %s: %w", path, err)
		}
		if _, err := conn.Write(buf[:n]); err != nil {
			return sent, fmt.Errorf("send to %s: %w", addr, err)
		}
		sent += int64(n)
	}
	if err := ack(conn); err != nil {
		return sent, fmt.Errorf("%s did not confirm: %w", addr, err)
	}
	return sent, nil
}

// ack waits for the one byte that says the rest of the chain stored the
// stream.
func ack(c net.Conn) error {
	var b [1]byte
	_, err := io.ReadFull(c, b[:])
	return err
}

// ErrProbe is why a connection without a stream was dropped.
var ErrProbe = errors.New("connection closed before the stream's length (a probe)")

// Node accepts one stream on ln (skipping probes), writes it to the file
// out (created or truncated) and, when next is not "", forwards it to the
// node at next. It returns the bytes stored once they are stored and the
// rest of the chain confirmed its part. ln is left open.
func Node(ctx context.Context, ln net.Listener, out, next string, cfg Config) (int64, error) {
	defer closeOnDone(ctx, ln)()
	for {
		up, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return 0, context.Cause(ctx)
			}
			return 0, err
		}
		n, err := relay(ctx, up, out, next, cfg)
		up.Close()
		if errors.Is(err, ErrProbe) {
			continue
		}
		return n, err
	}
}

// relay carries one stream from up.
func relay(ctx context.Context, up net.Conn, out, next string, cfg Config) (int64, error) {
	defer closeOnDone(ctx, up)()
	var hdr [8]byte
	if _, err := io.ReadFull(up, hdr[:]); err != nil {
		return 0, ErrProbe
	}
	cfg.tune(up)
	size := int64(binary.BigEndian.Uint64(hdr[:]))
	var down net.Conn
	if next != "" {
		d := net.Dialer{Timeout: dialTimeout}
		var err error
		if down, err = d.DialContext(ctx, "tcp", next); err != nil {
			return 0, err
		}
		defer down.Close()
		defer closeOnDone(ctx, down)()
		cfg.tune(down)
		if _, err := down.Write(hdr[:]); err != nil {
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
		n, err := io.ReadFull(up, buf[:min(int64(len(buf)), size-off)])
		if err != nil {
			return off, fmt.Errorf("receive at byte %d of %d: %w", off, size, err)
		}
		if down != nil {
			if _, err := down.Write(buf[:n]); err != nil {
				return off, fmt.Errorf("forward to %s: %w", next, err)
			}
		}
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			return off, fmt.Errorf("write %s: %w", out, err)
		}
		off += int64(n)
	}
	if err := f.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return off, fmt.Errorf("fsync %s: %w", out, err)
	}
	if err := f.Close(); err != nil {
		return off, fmt.Errorf("close %s: %w", out, err)
	}
	if down != nil {
		if err := ack(down); err != nil {
			return off, fmt.Errorf("%s did not confirm: %w", next, err)
		}
	}
	if _, err := up.Write([]byte{1}); err != nil {
		return off, fmt.Errorf("confirm upstream: %w", err)
	}
	return off, nil
}
