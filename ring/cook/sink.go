package cook

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/herdproject/herd/ring/digest"
	"github.com/herdproject/herd/ring/sink"
)

// Options tells NewSink where decoded bytes go and how to unpack.
type Options struct {
	// OpenRaw opens the output for kinds without an archive: the decoded
	// bytes go to one file, block device or standard output. Required for
	// those kinds, unused for archives.
	OpenRaw func(path string) (sink.Sink, error)
	// SameOwner restores the numeric uid and gid of archive entries (set it
	// when running as root). False leaves entries owned by the caller.
	SameOwner bool
	// Logf receives warnings (trailing garbage, skipped entries). Nil is
	// silent.
	Logf func(format string, args ...any)
	// Digest is the algorithm of Result.Digest; "" is digest.SHA256.
	Digest digest.Alg
}

// rawBlock is the unit of hole detection in raw outputs: an aligned block
// of this many zero bytes goes to the raw sink's Zero instead of Write.
const rawBlock = 4 << 10

// Sink decodes a pushed stream into its output. It implements sink.Sink:
// Write and Zero take the encoded bytes in order; Close waits for the
// decoder and reports the length and SHA-256 of the decoded bytes (for an
// archive, of the decompressed archive stream), which Digest reproduces
// from the same input.
//
// A decode or write error stops the decoder; the next Write or Zero, or
// Close, returns it, naming the output and what went wrong.
type Sink struct {
	kind   Kind
	output string
	opts   Options

	raw  sink.Sink // kinds without an archive
	root *os.Root  // archives: the output directory

	pr   *io.PipeReader
	pw   *io.PipeWriter
	done chan struct{} // closed when the decoder goroutine has returned

	// Set by the goroutine before done is closed.
	err error
	n   int64
	sum []byte

	mu    sync.Mutex
	state int
}

const (
	stateOpen = iota
	stateClosed
	stateAborted
)

// NewSink opens output for kind k and starts its decoder. For kinds with an
// archive, output is a directory, created if missing, under which entries
// are unpacked; otherwise opts.OpenRaw(output) opens where the decoded
// bytes go.
func NewSink(k Kind, output string, opts Options) (*Sink, error) {
	if err := k.check(); err != nil {
		return nil, fmt.Errorf("cook into %s: %w", output, err)
	}
	s := &Sink{kind: k, output: output, opts: opts, done: make(chan struct{})}
	if k.Archive == archNone {
		if opts.OpenRaw == nil {
			return nil, fmt.Errorf("cook %s into %s: no raw output opener (Options.OpenRaw)", k, output)
		}
		raw, err := opts.OpenRaw(output)
		if err != nil {
			return nil, fmt.Errorf("cook %s into %s: %w", k, output, err)
		}
		s.raw = raw
	} else {
		if err := os.MkdirAll(output, 0o755); err != nil {
			return nil, fmt.Errorf("cook %s into %s: %w", k, output, err)
		}
		root, err := os.OpenRoot(output)
		if err != nil {
			return nil, fmt.Errorf("cook %s into %s: %w", k, output, err)
		}
		s.root = root
	}
	s.pr, s.pw = io.Pipe()
	go s.run(s.pr)
	return s, nil
}

// run is the decoder goroutine.
func (s *Sink) run(pr *io.PipeReader) {
	defer close(s.done)
	if s.root != nil {
		defer s.root.Close()
	}
	err := s.decode(pr)
	if err != nil {
		if s.aborted() {
			err = ErrAborted
		}
		s.err = fmt.Errorf("cook %s into %s: %w", s.kind, s.output, err)
		pr.CloseWithError(s.err)
		return
	}
	// Whatever follows the end of the encoded stream is not decoded; take
	// it so that Write does not block.
	n, err := io.Copy(io.Discard, pr)
	if err != nil {
		if s.aborted() {
			err = ErrAborted
		}
		s.err = fmt.Errorf("cook %s into %s: %w", s.kind, s.output, err)
		return
	}
	if n > 0 && s.opts.Logf != nil {
		s.opts.Logf("cook %s into %s: ignored %d bytes after the end of the %s stream", s.kind, s.output, n, s.kind.Compression)
	}
}

// decode runs the decompressor, then the raw copy or the extractor.
func (s *Sink) decode(pr io.Reader) error {
	dec, closeDec, err := newDecoder(s.kind.Compression, pr, s.opts.Logf)
	if err != nil {
		return err
	}
	defer closeDec()
	c := digest.New(s.opts.Digest)
	if s.raw != nil {
		if err := copyRaw(s.raw, dec, c); err != nil {
			return err
		}
	} else {
		tee := io.TeeReader(dec, c)
		x := newExtractor(s.root, s.opts)
		switch s.kind.Archive {
		case archTar:
			err = x.tar(tee)
		case archCpio:
			err = x.cpio(tee)
		}
		if err != nil {
			return err
		}
		// The digest covers the whole decoded stream: take what follows
		// the archive's end (record padding).
		if _, err := io.Copy(io.Discard, tee); err != nil {
			return fmt.Errorf("after the archive's end: %w", err)
		}
	}
	s.n, s.sum = c.Len(), c.Sum(nil)
	return nil
}

// Write feeds encoded bytes to the decoder. It blocks until the decoder has
// taken them.
func (s *Sink) Write(p []byte) (int, error) {
	if err := s.usable(); err != nil {
		return 0, err
	}
	n, err := s.pw.Write(p)
	if err != nil {
		return n, s.writeErr(err)
	}
	return n, nil
}

// Zero feeds n zero bytes to the decoder, as if Written.
func (s *Sink) Zero(n int64) error {
	if err := s.usable(); err != nil {
		return err
	}
	for n > 0 {
		m := min(n, int64(len(zeros)))
		if _, err := s.pw.Write(zeros[:m]); err != nil {
			return s.writeErr(err)
		}
		n -= m
	}
	return nil
}

func (s *Sink) usable() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case stateClosed:
		return fmt.Errorf("cook %s into %s: write after Close", s.kind, s.output)
	case stateAborted:
		return fmt.Errorf("cook %s into %s: %w", s.kind, s.output, ErrAborted)
	}
	return nil
}

// writeErr turns the pipe's error into the sink's: the decoder's own error
// (it closed the pipe with it) or the abort.
func (s *Sink) writeErr(err error) error {
	if s.aborted() || errors.Is(err, ErrAborted) {
		return fmt.Errorf("cook %s into %s: %w", s.kind, s.output, ErrAborted)
	}
	return err
}

func (s *Sink) aborted() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state == stateAborted
}

// Close ends the input, waits for the decoder, closes the raw output and
// returns the decoded length and SHA-256. After a decode error it aborts
// the raw output and returns the error.
func (s *Sink) Close() (sink.Result, error) {
	s.mu.Lock()
	if s.state != stateOpen {
		st := s.state
		s.mu.Unlock()
		if st == stateAborted {
			return sink.Result{}, fmt.Errorf("cook %s into %s: close: %w", s.kind, s.output, ErrAborted)
		}
		return sink.Result{}, fmt.Errorf("cook %s into %s: closed twice", s.kind, s.output)
	}
	s.state = stateClosed
	s.mu.Unlock()

	s.pw.Close()
	<-s.done
	if s.err != nil {
		if s.raw != nil {
			s.raw.Abort()
		}
		return sink.Result{}, s.err
	}
	if s.raw != nil {
		if _, err := s.raw.Close(); err != nil {
			return sink.Result{}, fmt.Errorf("cook %s into %s: %w", s.kind, s.output, err)
		}
	}
	return sink.Result{Bytes: s.n, Digest: s.sum}, nil
}

// Abort stops the decoder, waits for it to return and aborts the raw
// output. Entries an archive already unpacked stay. Safe to call twice,
// and after Close (then it does nothing).
func (s *Sink) Abort() {
	s.mu.Lock()
	if s.state != stateOpen {
		s.mu.Unlock()
		return
	}
	s.state = stateAborted
	s.mu.Unlock()

	// Closing the read end fails a Write blocked in the pipe; closing
	// the write end fails the decoder's pending Read.
	s.pr.CloseWithError(ErrAborted)
	s.pw.CloseWithError(ErrAborted)
	<-s.done
	if s.raw != nil {
		s.raw.Abort()
	}
}

var _ sink.Sink = (*Sink)(nil)

// copyRaw copies decoded bytes to dst, hashing them into c, and sends
// aligned all-zero blocks through dst.Zero so that images stay sparse
// (and c hashes them as a hole).
func copyRaw(dst sink.Sink, src io.Reader, c digest.Hash) error {
	buf := make([]byte, 64*rawBlock)
	var pendingZero int64
	for {
		// Whole buffers keep every block aligned to its offset in the
		// output; only the last one may be short.
		n, rerr := fill(src, buf)
		chunk := buf[:n]
		start := c.Len()
		dataFrom := -1 // start of the pending run of data blocks
		writeData := func(end int) error {
			if dataFrom < 0 {
				return nil
			}
			c.Write(chunk[dataFrom:end])
			if _, err := dst.Write(chunk[dataFrom:end]); err != nil {
				return fmt.Errorf("write at offset %d: %w", start+int64(dataFrom), err)
			}
			dataFrom = -1
			return nil
		}
		for off := 0; off < len(chunk); off += rawBlock {
			end := min(off+rawBlock, len(chunk))
			if allZero(chunk[off:end]) {
				if err := writeData(off); err != nil {
					return err
				}
				c.Zeros(int64(end - off))
				pendingZero += int64(end - off)
				continue
			}
			if pendingZero > 0 {
				if err := dst.Zero(pendingZero); err != nil {
					return fmt.Errorf("write hole of %d bytes at offset %d: %w", pendingZero, start+int64(off)-pendingZero, err)
				}
				pendingZero = 0
			}
			if dataFrom < 0 {
				dataFrom = off
			}
		}
		if err := writeData(len(chunk)); err != nil {
			return err
		}
		if rerr == io.EOF {
			if pendingZero > 0 {
				if err := dst.Zero(pendingZero); err != nil {
					return fmt.Errorf("write hole of %d bytes at offset %d: %w", pendingZero, c.Len()-pendingZero, err)
				}
			}
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// fill reads into buf until it is full or the reader fails; err is io.EOF
// only at the real end of the input.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
