// Package tftp is the management host's read-only TFTP server: it hands
// PXE firmware and pxelinux their boot files (undionly.kpxe, pxelinux.0,
// ldlinux.c32, pxelinux.cfg/…, kernels) from the boot tree.
//
// The protocol engine is pack.ag/tftp (RFC 1350 with the option extension
// of RFC 2347: blksize RFC 2348, timeout and tsize RFC 2349, windowsize
// RFC 7440). Its FileServer is not used: it serves "../" paths outside
// its directory. Files are opened here through an [os.Root], so no "..",
// absolute path or symlink leads out of the boot tree. Write requests are
// refused.
//
// Guards around the library (pinned at v1.0.1-0.20181129014014-07909dfbde3c):
//
//   - A read request without a terminating NUL panics the library's
//     request decoder (in a goroutine of its own, so the whole process
//     dies). A socket filter on the listening socket drops such datagrams
//     before the library sees them (filter_linux.go).
//   - The library accepts every option value it can parse: windowsize 0
//     divides by zero, blksize 0 sends empty blocks forever, and
//     windowsize × blksize is allocated up front (nine bytes per byte of
//     window). Each request's options are checked before the first byte
//     is sent (options.go) and a request outside RFC 2348/2349/7440's
//     ranges, or with a window above [MaxWindowBytes], is refused with
//     error 8 (RFC 2347 option negotiation failed).
//
// Gaps the library leaves:
//
//   - tsize is answered (RFC 2349 §4) for octet transfers only: a netascii
//     file's size on the wire is not its size on disk.
//   - The server cannot lower a client's blksize or windowsize (RFC 2348
//     allows the server to answer a smaller one); it accepts the client's
//     value or refuses the request.
//   - Each transfer gets a socket of its own (RFC 1350's transfer ID)
//     bound to the wildcard address, so a reply's source address is the
//     one routing picks for the client; on a host with several addresses
//     in the boot subnet that may differ from Config.Addr's host.
//   - The block number wraps past 65535 (files above 32 MiB at blksize
//     512); most clients, iPXE and pxelinux included, accept the wrap.
package tftp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"pack.ag/tftp"
)

// MaxWindowBytes caps windowsize × blksize of one transfer: the library
// allocates nine bytes per byte of window for every transfer.
const MaxWindowBytes = 1 << 20

// shutdownGrace is how long Serve waits, once its context ends, for the
// transfers in flight to give up.
const shutdownGrace = 5 * time.Second

// ErrServerClosed is returned by Serve when Close was called first.
var ErrServerClosed = errors.New("tftp: server closed")

// Config is the TFTP server's configuration. Zero values are defaults.
type Config struct {
	// Addr is the UDP address to listen on, "host:port": ":69" (the
	// default) listens on every address, "10.0.0.1:69" on one.
	Addr string
	// Root is the boot tree; every request is resolved inside it
	// (required).
	Root string
	// Logf receives one line per transfer and per refusal; nil discards.
	Logf func(string, ...any)
	// Observe, when set, is called once per read request whose file was
	// found, before its first byte is sent, with the client's address and
	// the file's path relative to Root ("pxelinux.cfg/01-52-54-00-00-00-01").
	// It runs on the transfer's goroutine and should return quickly.
	Observe func(remote net.Addr, file string)
	// Generate, when set, is asked first for every request, with the same
	// path Observe gets; ok = true serves data instead of a file under
	// Root. It lets the boot services hand out per-node pxelinux configs
	// without writing them to disk.
	Generate func(remote net.Addr, file string) (data []byte, ok bool)
}

// Server is a read-only TFTP server over one UDP socket. It is bound by
// New; call Serve (or Close) to release it.
type Server struct {
	cfg  Config
	root *os.Root
	conn *net.UDPConn

	ctx    context.Context // ends when Serve's context ends or Close is called
	cancel context.CancelFunc

	mu       sync.Mutex
	closed   bool // Close was called
	serving  bool // Serve is running
	draining bool // no new transfers
	active   sync.WaitGroup
}

// New checks cfg, opens the boot tree and binds the UDP socket, so that a
// wrong root or a busy port is reported before anything is served.
func New(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = ":69"
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if cfg.Root == "" {
		return nil, errors.New("tftp: no root directory: give the boot tree")
	}
	root, err := os.OpenRoot(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("tftp: boot tree: %w", err)
	}
	addr, err := net.ResolveUDPAddr("udp", cfg.Addr)
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("tftp: address %q: %w", cfg.Addr, err)
	}
	conn, err := net.ListenUDP("udp", addr)
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("tftp: listen on %s: %w (is another TFTP server running? stop it or choose another port)", cfg.Addr, err)
	}
	if err := attachRequestFilter(conn); err != nil {
		// Without the filter one malformed datagram can bring the
		// process down; refuse to run rather than run exposed.
		conn.Close()
		root.Close()
		return nil, fmt.Errorf("tftp: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{cfg: cfg, root: root, conn: conn, ctx: ctx, cancel: cancel}, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.conn.LocalAddr() }

// Serve answers requests until ctx ends (it then returns nil) or the
// socket fails. Transfers in flight are given a few seconds to end. The
// socket and the boot tree are closed when Serve returns.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	if s.serving {
		s.mu.Unlock()
		return errors.New("tftp: Serve called twice")
	}
	s.serving = true
	s.mu.Unlock()
	defer s.Close()

	// The address given here is unused: the library serves s.conn.
	srv, err := tftp.NewServer(s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("tftp: %w", err)
	}
	// No WriteHandler: the library answers a write request with
	// "illegal operation" before reading a byte of it.
	srv.ReadHandler(tftp.ReadHandlerFunc(s.serveRead))

	done := make(chan error, 1)
	go func() { done <- srv.Serve(s.conn) }()
	s.cfg.Logf("tftp: serving %s on %s", s.cfg.Root, s.conn.LocalAddr())

	var serr error
	served := false // srv.Serve has returned
	select {
	case <-ctx.Done():
	case <-s.ctx.Done():
	case serr = <-done:
		served = true
	}
	s.drain()
	// Closing the socket ends the library's read loop (it polls every
	// 500 ms) with an error that is expected here. srv.Close then stops
	// its dispatcher; it is only safe once srv.Serve has stored the
	// socket, which it does before it returns.
	_ = s.conn.Close()
	if !served {
		<-done
	}
	_ = srv.Close()
	if serr != nil {
		return fmt.Errorf("tftp: %w", serr)
	}
	return nil
}

// drain stops new transfers, tells the running ones to stop and waits for
// them, at most shutdownGrace.
func (s *Server) drain() {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	s.cancel()
	waited := make(chan struct{})
	go func() { s.active.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(shutdownGrace):
		s.cfg.Logf("tftp: transfers still running after %v; leaving them", shutdownGrace)
	}
}

// Close stops Serve, or releases the socket and the boot tree of a server
// never served. It is safe to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.draining = true
	s.mu.Unlock()
	s.cancel()
	err := s.conn.Close()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	if rerr := s.root.Close(); err == nil {
		err = rerr
	}
	return err
}

// begin registers a transfer; false once the server is draining.
func (s *Server) begin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return false
	}
	s.active.Add(1)
	return true
}
