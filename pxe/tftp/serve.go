package tftp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"syscall"
	"time"

	"pack.ag/tftp"
)

// errCodeOptionNegotiation is RFC 2347's error 8: the request's options
// are refused.
const errCodeOptionNegotiation tftp.ErrorCode = 8

// Messages sent to clients; the log gets the details.
const (
	msgNotFound  = "file not found"
	msgAccess    = "access violation"
	msgShutdown  = "server shutting down"
	msgReadError = "read error"
)

var (
	errAccess   = errors.New("outside the boot tree")
	errNotFound = errors.New("no such file")
)

// cleanName maps a requested name to a path relative to the boot tree.
// One leading "/" is dropped (clients often ask for "/pxelinux.0"), and
// empty and "." elements are skipped; a name that is then still
// absolute, or has a ".." element, is refused with errAccess. os.Root
// confines what is left, symlinks included.
func cleanName(name string) (string, error) {
	name = strings.TrimPrefix(name, "/")
	if strings.HasPrefix(name, "/") {
		return "", errAccess
	}
	var elems []string
	for _, e := range strings.Split(name, "/") {
		switch e {
		case "", ".":
		case "..":
			return "", errAccess
		default:
			elems = append(elems, e)
		}
	}
	if len(elems) == 0 {
		return "", errNotFound
	}
	return strings.Join(elems, "/"), nil
}

// serveRead answers one read request; it runs on the library's goroutine
// for the transfer.
func (s *Server) serveRead(r tftp.ReadRequest) {
	remote, asked := r.Addr(), r.Name()
	if !s.begin() {
		r.WriteError(tftp.ErrCodeNotDefined, msgShutdown)
		return
	}
	defer s.active.Done()

	req, err := requestOf(r)
	if err != nil {
		s.cfg.Logf("tftp: %s %q: refused: %v", remote, asked, err)
		r.WriteError(tftp.ErrCodeNotDefined, "server error")
		return
	}
	if err := checkOptions(req.Options); err != nil {
		s.cfg.Logf("tftp: %s %q: refused: %v", remote, asked, err)
		r.WriteError(errCodeOptionNegotiation, err.Error())
		return
	}
	name, err := cleanName(asked)
	if err != nil {
		s.refuse(r, asked, err)
		return
	}
	if s.cfg.Generate != nil {
		if data, ok := s.cfg.Generate(remote, name); ok {
			s.send(r, name, bytes.NewReader(data), int64(len(data)))
			return
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
		s.refuse(r, asked, err)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		s.refuse(r, asked, errNotFound)
		return
	}
	s.send(r, name, f, fi.Size())
}

func (s *Server) refuse(r tftp.ReadRequest, asked string, err error) {
	s.cfg.Logf("tftp: %s %q: refused: %v", r.Addr(), asked, err)
	if errors.Is(err, errAccess) {
		r.WriteError(tftp.ErrCodeAccessViolation, msgAccess)
		return
	}
	r.WriteError(tftp.ErrCodeFileNotFound, msgNotFound)
}

// send streams src to the client. The library sends the last (short or
// empty) block and waits for its ACK after the handler returns.
func (s *Server) send(r tftp.ReadRequest, name string, src io.Reader, size int64) {
	remote := r.Addr()
	if r.TransferMode() == tftp.ModeOctet {
		r.WriteSize(size) // answered when the client asked for tsize
	}
	if s.cfg.Observe != nil {
		s.cfg.Observe(remote, name)
	}
	start := time.Now()
	// The first Write negotiates the options; an empty one makes sure it
	// happens even for an empty file (the library would send nothing).
	if _, err := r.Write(nil); err != nil {
		s.cfg.Logf("tftp: %s %s: option negotiation: %v", remote, name, err)
		return
	}
	buf := make([]byte, 64<<10)
	var sent int64
	for {
		if s.ctx.Err() != nil {
			s.cfg.Logf("tftp: %s %s: stopped after %d of %d bytes: shutting down", remote, name, sent, size)
			r.WriteError(tftp.ErrCodeNotDefined, msgShutdown)
			return
		}
		n, rerr := src.Read(buf)
		if n > 0 {
			if _, err := r.Write(buf[:n]); err != nil {
				s.cfg.Logf("tftp: %s %s: aborted after %d of %d bytes: %v", remote, name, sent, size, err)
				return
			}
			sent += int64(n)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			s.cfg.Logf("tftp: %s %s: %v", remote, name, rerr)
			r.WriteError(tftp.ErrCodeNotDefined, msgReadError)
			return
		}
	}
	s.cfg.Logf("tftp: %s %s: %d bytes in %v", remote, name, sent, time.Since(start).Round(time.Millisecond))
}
