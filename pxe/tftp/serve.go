package tftp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/herdproject/herd/pxe/bootlayout"
	"github.com/pin/tftp/v3"
)

// Errors a handler returns: the library sends their text to the client
// in an ERROR packet (always code 1); the log gets the details.
var (
	errAccess   = errors.New("access violation") // outside the boot tree
	errNotFound = errors.New("file not found")
	errShutdown = errors.New("server shutting down")
	errRead     = errors.New("read error")
	errReadOnly = errors.New("write requests are not allowed")
	errInternal = errors.New("server error")
)

// cleanName maps a requested name to a path relative to the boot tree.
// One leading "/" is dropped (clients often ask for "/pxelinux.0"); a
// name that is then still absolute, or has a ".." element, is refused
// with errAccess (bootlayout.Rel does the rest).
func cleanName(name string) (string, error) {
	name = strings.TrimPrefix(name, "/")
	if strings.HasPrefix(name, "/") {
		return "", errAccess
	}
	rel, err := bootlayout.Rel(name)
	switch {
	case errors.Is(err, bootlayout.ErrOutside):
		return "", errAccess
	case err != nil:
		return "", errNotFound
	}
	return rel, nil
}

// transfer is what the library hands a read handler: its sender.
type transfer interface {
	io.ReaderFrom
	tftp.OutgoingTransfer
}

// serveRead answers one read request; the library runs it on a goroutine
// of the transfer's own, with the request's transfer socket open. An
// error it returns is sent to the client.
func (s *Server) serveRead(asked string, rf io.ReaderFrom) error {
	tr, ok := rf.(transfer)
	if !ok { // not the library's sender: its API changed
		s.log.Warn(fmt.Sprintf("tftp: %q: refused: %T is not a tftp.OutgoingTransfer", asked, rf))
		return errInternal
	}
	ra := tr.RemoteAddr()
	remote := &ra
	if s.ctx.Err() != nil {
		s.log.Debug(fmt.Sprintf("tftp: %s %q: refused: %v", remote, asked, errShutdown))
		return errShutdown
	}
	name, err := cleanName(asked)
	if err != nil {
		return s.refuse(remote, asked, err)
	}
	if s.cfg.Generate != nil {
		if data, ok := s.cfg.Generate(remote, name); ok {
			return s.send(tr, remote, name, bytes.NewReader(data), int64(len(data)))
		}
	}
	f, err := s.root.Open(name)
	if err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
			err = errNotFound
		default: // escapes (through a symlink), permissions, loops
			err = fmt.Errorf("%w: %v", errAccess, err)
		}
		return s.refuse(remote, asked, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return s.refuse(remote, asked, errNotFound)
	}
	return s.send(tr, remote, name, f, fi.Size())
}

// refuse logs why a request is refused and returns the error the client
// gets: errAccess or errNotFound, without the details.
func (s *Server) refuse(remote net.Addr, asked string, err error) error {
	s.log.Warn(fmt.Sprintf("tftp: %s %q: refused: %v", remote, asked, err))
	if errors.Is(err, errAccess) {
		return errAccess
	}
	return errNotFound
}

// send streams src to the client. ReadFrom sends the OACK, the blocks and
// the last (short or empty) block and waits for its ACK; when it fails it
// has already sent the client an ERROR and closed the transfer socket, so
// nil is returned (the library would find nothing left to abort).
func (s *Server) send(tr transfer, remote net.Addr, name string, src io.Reader, size int64) error {
	// Answers tsize (RFC 2349 §4) when the client asked for it, whatever
	// value it sent; without it the library would echo a value other
	// than "0".
	tr.SetSize(size)
	if s.cfg.Observe != nil {
		s.cfg.Observe(remote, name)
	}
	start := time.Now()
	r := &transferReader{ctx: s.ctx, src: src}
	sent, err := readFrom(tr, r)
	switch {
	case r.err != nil:
		s.log.Warn(fmt.Sprintf("tftp: %s %s: stopped after %d of %d bytes: %v", remote, name, sent, size, r.err))
	case err != nil:
		s.log.Warn(fmt.Sprintf("tftp: %s %s: aborted after %d of %d bytes: %v", remote, name, sent, size, err))
	default:
		s.log.Debug(fmt.Sprintf("tftp: %s %s: %d bytes in %v", remote, name, sent, time.Since(start).Round(time.Millisecond)))
	}
	return nil
}

// readFrom is rf.ReadFrom with a panic in it turned into an error.
// github.com/pin/tftp/v3 v3.1.0 builds the OACK in a buffer of blksize+4
// bytes without checking its length, and the tsize it answers may be
// longer than the one the request carried: a 516-byte request with an
// empty mode, blksize 512 written with leading zeros and an empty tsize
// makes packOACK index past the buffer when the file's size has three
// digits more than its name has characters (the test's longOACK: "x",
// 100000 bytes; in herd's own boot tree "vmlinuz" would need 1 GB, but
// an operator's "a.img" only 10 MB). The library's own tsize (tsize "0"
// and an io.Seeker) does the same. The panic runs on the
// handler's goroutine; unrecovered it ends the process. ReadFrom's
// deferred close has released the transfer socket by the time it is
// recovered here; the client gets no answer and times out.
func readFrom(rf io.ReaderFrom, r io.Reader) (n int64, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("tftp library panicked: %v", p)
		}
	}()
	return rf.ReadFrom(r)
}

// transferReader stops a transfer when the server shuts down and keeps a
// read error's details from the client.
type transferReader struct {
	ctx context.Context
	src io.Reader
	err error // why Read failed: errShutdown or the source's error
}

func (r *transferReader) Read(p []byte) (int, error) {
	if r.ctx.Err() != nil {
		r.err = errShutdown
		return 0, errShutdown
	}
	n, err := r.src.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
		return n, errRead
	}
	return n, err
}

// refuseWrite answers a write request: the server is read-only. Nothing
// is received; the library sends the error from the transfer socket.
func (s *Server) refuseWrite(name string, wt io.WriterTo) error {
	remote := "?"
	if it, ok := wt.(tftp.IncomingTransfer); ok {
		ra := it.RemoteAddr()
		remote = ra.String()
	}
	s.log.Warn(fmt.Sprintf("tftp: %s %q: write refused: read-only server", remote, name))
	return errReadOnly
}

// logHook logs the datagrams the library drops before a transfer starts:
// too short, unknown opcode, a request it cannot split, or a failed
// transfer socket. A transfer's own failures are logged by serveRead and
// refuseWrite, which know more.
type logHook struct{ log *slog.Logger }

func (h logHook) OnSuccess(tftp.TransferStats) {}

func (h logHook) OnFailure(st tftp.TransferStats, err error) {
	if st.RemoteAddr != nil {
		return
	}
	h.log.Debug(fmt.Sprintf("tftp: datagram dropped: %v", err))
}
