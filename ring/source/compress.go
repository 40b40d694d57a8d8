package source

import (
	"io"
	"sync"

	"github.com/klauspost/pgzip"
)

// compress gzips the stream on the fly (dolly's "compressed outfile" of an
// input that is not compressed yet). pgzip compresses 1 MiB blocks on all
// cores and writes one ordinary gzip member: on-the-fly compression is the
// only stage of the sender that is CPU-bound, and one core running deflate
// is slower than the ring.
func (s *Source) compress() {
	inner, innerClose := s.r, s.close
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		pw.CloseWithError(gzipCopy(pw, inner))
	}()
	s.name += " (gzip on the fly)"
	s.size, s.dataSize = -1, -1
	s.r, s.ra = pr, nil
	s.file, s.fi = nil, nil // the stream is no longer the file's bytes
	s.close = func() error {
		pr.CloseWithError(ErrClosed) // unblocks a pending write
		err := innerClose()          // unblocks a pending read
		<-done
		return err
	}
}

// gzipCopy compresses src into w.
func gzipCopy(w io.Writer, src io.Reader) error {
	// pgzip leaves a goroutine behind when its writer fails (it returns
	// from Close before ending it), so its writer never fails: the first
	// error is kept and later output dropped, and the copy stops.
	sw := &stickyWriter{w: w}
	zw := pgzip.NewWriter(sw)
	buf := make([]byte, 1<<20)
	var err error
	for err == nil {
		var n int
		n, err = src.Read(buf)
		if n > 0 {
			if _, werr := zw.Write(buf[:n]); werr != nil && err == nil {
				err = werr
			}
		}
		if werr := sw.failed(); werr != nil {
			err = werr
		}
	}
	if err == io.EOF {
		err = nil
	}
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	if werr := sw.failed(); err == nil {
		err = werr
	}
	return err
}

// stickyWriter passes writes on until one fails, then reports success and
// drops the bytes; failed tells the first error.
type stickyWriter struct {
	w   io.Writer
	mu  sync.Mutex
	err error
}

func (s *stickyWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	failed := s.err != nil
	s.mu.Unlock()
	if failed {
		return len(p), nil
	}
	if _, err := s.w.Write(p); err != nil {
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
	}
	return len(p), nil
}

func (s *stickyWriter) failed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}
