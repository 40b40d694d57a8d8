// Package tftp is the management host's read-only TFTP server: it hands
// PXE firmware and pxelinux their boot files (undionly.kpxe, pxelinux.0,
// ldlinux.c32, pxelinux.cfg/…, kernels) from the boot tree.
//
// The protocol engine is github.com/pin/tftp/v3 (v3.1.0): RFC 1350 with
// the option extension of RFC 2347, blksize (RFC 2348) and tsize
// (RFC 2349). Files are opened here through an [os.Root], so no "..",
// absolute path or symlink leads out of the boot tree. Write requests are
// refused.
//
// What the library does with a request, checked by this package's tests
// (TestHostileRequests, FuzzDatagram):
//
//   - Requests are split at NUL bytes; no request crashes the library's
//     read loop. A datagram under four bytes, or without a NUL after the
//     file name, is dropped unanswered (and logged). A request without a mode, or whose last field lacks its
//     NUL, is served in octet mode. A request is read into 516 bytes; the
//     rest of a longer one is cut off. pack.ag/tftp, used before, panicked
//     on a read request without NUL; the socket filter that guarded it is
//     gone with it.
//   - Options other than blksize and tsize (windowsize RFC 7440, timeout
//     RFC 2349, anything unknown) are left out of the OACK, which RFC 2347
//     §3 allows: the client then uses RFC 1350's defaults, one block per
//     ACK. windowsize 0 or 65535 is therefore harmless.
//   - blksize is acknowledged from 512 to 65464 and lowered to the
//     interface's MTU less the IP and UDP headers (RFC 2348 lets the
//     server answer a smaller value). A value below 512 (RFC 2348 allows
//     8), above 65464 or not a number is left out of the OACK: the
//     transfer uses 512-byte blocks.
//   - tsize is answered with the file's size, which the read handler
//     gives the library, whatever the client sent in it ("0", another
//     number or not a number).
//   - One request panics it: the OACK is built in a buffer of blksize+4
//     bytes, unchecked, and a 516-byte request with blksize 512 written
//     with leading zeros and a tsize shorter than the answer overflows
//     it. The panic runs on the read handler's goroutine, which recovers
//     it (readFrom in serve.go); that client gets no answer.
//   - Each transfer gets a socket of its own (RFC 1350's transfer ID)
//     bound to the address the request was sent to, so replies come from
//     Config.Addr's host even on a host with several addresses.
//
// Gaps it leaves:
//
//   - The read handler sees neither the request's options nor its mode,
//     so the options cannot be refused with RFC 2347's error 8; they are
//     ignored as above.
//   - Every error the server sends has code 1 (file not found), with the
//     reason in the message ("access violation", "file not found",
//     "server shutting down"): the library sends a handler's error that
//     way. tftp-hpa shows the message; curl exits 68 (not 69 for an
//     access violation).
//   - tsize is not answered for an empty file: the library leaves a
//     tsize of "0" out of the OACK.
//   - tsize is the file's size on disk, also for a netascii transfer,
//     whose size on the wire differs (the handler cannot see the mode).
//     PXE clients ask for octet.
//   - Mode names are compared exactly: "netascii" converts line ends,
//     anything else ("NETASCII", "mail") is sent as octet.
//   - The block number wraps past 65535 (files above 32 MiB at blksize
//     512); most clients, iPXE and pxelinux included, accept the wrap.
package tftp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/pin/tftp/v3"
)

// MaxWindowBytes capped windowsize × blksize of one transfer when the
// server negotiated RFC 7440's windowsize.
//
// Deprecated: github.com/pin/tftp/v3 does not negotiate windowsize; every
// transfer sends one block per ACK and holds one block in memory.
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
	// Log receives one record per transfer (debug) and per refusal
	// (warning); nil discards.
	Log *slog.Logger
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
	log  *slog.Logger
	root *os.Root
	conn *net.UDPConn

	ctx    context.Context // ends when Serve's context ends or Close is called
	cancel context.CancelFunc

	mu      sync.Mutex
	closed  bool // Close was called
	serving bool // Serve is running
}

// New checks cfg, opens the boot tree and binds the UDP socket, so that a
// wrong root or a busy port is reported before anything is served.
func New(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = ":69"
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
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
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{cfg: cfg, log: cfg.Log, root: root, conn: conn, ctx: ctx, cancel: cancel}, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.conn.LocalAddr() }

// Serve answers requests until ctx ends (it then returns nil). Transfers
// in flight are stopped at their next block and given a few seconds to
// end. The socket and the boot tree are closed when Serve returns.
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

	srv := tftp.NewServer(s.serveRead, s.refuseWrite)
	srv.SetHook(logHook{s.log})
	// Timeout and retries stay the library's: 5 s per round trip, 5
	// attempts per block.

	// The library's Serve returns an error only for a socket whose
	// address it cannot read; read errors it skips.
	done := make(chan error, 1)
	go func() { done <- srv.Serve(s.conn) }()
	s.log.Debug(fmt.Sprintf("tftp: serving %s on %s", s.cfg.Root, s.conn.LocalAddr()))

	var serr error
	served := false // srv.Serve has returned
	select {
	case <-ctx.Done():
	case <-s.ctx.Done():
	case serr = <-done:
		served = true
	}
	// Running transfers stop at their next block (transferReader). The
	// socket is closed here too: the library's Shutdown only closes it
	// once its Serve has stored it, which may not have happened yet.
	s.cancel()
	_ = s.conn.Close()
	stopped := make(chan struct{})
	go func() { srv.Shutdown(); close(stopped) }()
	grace, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	select {
	case <-stopped:
	case <-grace.Done():
		s.log.Warn(fmt.Sprintf("tftp: transfers still running after %v; leaving them", shutdownGrace))
	}
	if !served {
		// The library's Serve returns once Shutdown has cancelled it,
		// before Shutdown waits for the transfers.
		select {
		case serr = <-done:
		case <-grace.Done():
		}
	}
	if serr != nil {
		return fmt.Errorf("tftp: %w", serr)
	}
	return nil
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
