package relay

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/herdproject/herd/ring/cook"
	"github.com/herdproject/herd/ring/digest"
	"github.com/herdproject/herd/ring/readback"
	"github.com/herdproject/herd/ring/sink"
	"github.com/herdproject/herd/ring/stream"
	"github.com/herdproject/herd/ring/wire"
)

// writer is the stage that writes each file to its output. A failing
// output fails that file only; the stream goes on (and on to the children).
type writer struct {
	in      chan *stream.Chunk
	done    chan struct{}
	files   []wire.SetupFile
	stdout  io.Writer
	noSync  bool
	verify  string     // Setup.Verify
	digest  digest.Alg // Setup.Digest
	log     *slog.Logger
	written atomic.Int64
	file    atomic.Int32
	// readBackBytes counts the bytes readBack re-read so far, all files.
	readBackBytes atomic.Int64

	cur     sink.Sink
	results []writeResult
	broken  bool // close was given a cause: the stream did not end
}

type writeResult struct {
	err     string
	written int64
	sum     []byte // set for cooked files: the digest of the decoded bytes
	closed  bool   // the output was closed (synced) whole, at the file's end

	// Set by readBack (wire.FileResult's Readback* fields): the digest
	// of the written bytes as re-read from the output, how they were
	// read (or "not applicable: WHY"), why the read-back failed, how
	// long it took.
	readbackSum     []byte
	readbackMethod  string
	readbackErr     string
	readbackSeconds float64
}

func newWriter(s *wire.Setup, depth int, stdout io.Writer, noSync bool, log *slog.Logger) *writer {
	w := &writer{
		digest: digest.Alg(s.Digest), // named by Node.check
		in:     make(chan *stream.Chunk, depth), done: make(chan struct{}),
		files: s.Files, stdout: stdout, noSync: noSync, verify: s.Verify, log: log,
		results: make([]writeResult, len(s.Files)),
	}
	go w.run()
	return w
}

func (w *writer) In() chan<- *stream.Chunk { return w.in }

func (w *writer) run() {
	defer close(w.done)
	for c := range w.in {
		for i, s := range c.Segs {
			w.seg(s, c.Payload(i))
		}
		c.Release()
	}
}

func (w *writer) fail(f uint32, err error) {
	if w.results[f].err == "" {
		w.results[f].err = err.Error()
		w.log.Warn(fmt.Sprintf("file %d: %v", f+1, err))
	}
	if w.cur != nil {
		w.cur.Abort()
		w.cur = nil
	}
}

func (w *writer) seg(s stream.Seg, p []byte) {
	f := s.H.File
	switch s.H.Type {
	case wire.TFileStart:
		w.file.Store(int32(f))
		sk, err := w.open(w.files[f])
		if err != nil {
			w.fail(f, err)
			return
		}
		w.cur = sk
	case wire.TData:
		if w.cur == nil {
			return
		}
		if _, err := w.cur.Write(p); err != nil {
			w.fail(f, err)
			return
		}
		w.written.Add(int64(len(p)))
	case wire.THole:
		if w.cur == nil {
			return
		}
		if err := w.cur.Zero(int64(s.H.Length)); err != nil {
			w.fail(f, err)
			return
		}
		w.written.Add(int64(s.H.Length))
	case wire.TFileEnd:
		if w.cur == nil {
			return
		}
		res, err := w.cur.Close()
		w.cur = nil
		if err != nil {
			w.fail(f, err)
			return
		}
		w.results[f].written, w.results[f].sum, w.results[f].closed = res.Bytes, res.Digest, true
	}
}

func (w *writer) open(f wire.SetupFile) (sink.Sink, error) {
	opts := sink.Options{Size: f.Size, DataSize: f.DataSize, Split: f.Split, NoSync: w.noSync, Stdout: w.stdout}
	switch {
	case f.Discard:
		return discard{}, nil
	case f.Cooked:
		k, err := cook.KindOf(f.InputName)
		if err != nil {
			return nil, err
		}
		raw := opts
		raw.Size, raw.DataSize = -1, -1
		return cook.NewSink(k, f.Output, cook.Options{
			OpenRaw:   func(path string) (sink.Sink, error) { return sink.Open(path, raw) },
			SameOwner: isRoot(),
			Logf:      func(format string, args ...any) { w.log.Info(fmt.Sprintf(format, args...)) },
			Digest:    w.digest,
		})
	default:
		return sink.Open(f.Output, opts)
	}
}

// close ends the stage; a file left open by a broken stream is aborted.
func (w *writer) close(cause error) {
	close(w.in)
	<-w.done
	w.broken = cause != nil
	if w.cur != nil {
		w.fail(uint32(w.file.Load()), fmt.Errorf("stream broken: %v", cause))
	}
}

// readBack is read-back verification (Setup.Verify ==
// wire.VerifyReadback): once the stream ended and close returned, it
// re-reads every file written whole from its output with O_DIRECT
// (package readback) and records the digest in the file's writeResult
// (putReadback). Nothing is read back after a broken stream.
// It runs after the stream, not at each file's end, so that a slow
// read-back never holds back the stream or the nodes after this one.
// Outputs that cannot be re-read as the stream (an unpacked archive,
// standard output, a pipe, dummy mode) get readbackMethod "not
// applicable: WHY". A file that failed is not read back.
//
// With NoSync (dolly's -n) the outputs were not fsynced: readback.Digest
// fsyncs each one anyway before reading it, since a read-back of bytes
// still in the page cache would prove nothing about the disk.
func (w *writer) readBack(ctx context.Context) {
	if w.verify != wire.VerifyReadback || w.broken {
		return
	}
	for i, f := range w.files {
		r := &w.results[i]
		if r.err != "" || !r.closed {
			continue
		}
		if why := notReadable(f); why != "" {
			r.readbackMethod = "not applicable: " + why
			continue
		}
		base, start := w.readBackBytes.Load(), time.Now()
		res, err := readback.Digest(ctx, f.Output, r.written, readback.Options{
			Split:    f.Split,
			Progress: func(n int64) { w.readBackBytes.Store(base + n) },
			Digest:   w.digest,
		})
		r.readbackSeconds = time.Since(start).Seconds()
		switch {
		case errors.Is(err, readback.ErrUnsupported):
			r.readbackMethod = "not applicable: " + f.Output + " is not a file or block device"
		case err != nil:
			r.readbackErr = err.Error()
			w.log.Warn(fmt.Sprintf("file %d: %v", i+1, err))
		default:
			r.readbackSum, r.readbackMethod = res.Digest, res.Method
			holes := ""
			if res.Holes > 0 {
				holes = fmt.Sprintf(", %d of them holes, not read", res.Holes)
			}
			w.log.Info(fmt.Sprintf("file %d: read back %d bytes of %s in %.1fs (%s%s)", i+1, res.Bytes, f.Output, r.readbackSeconds, res.Method, holes))
		}
	}
}

// putReadback sets the read-back fields of the file's verdict.
func (r *writeResult) putReadback(f *wire.FileResult) {
	f.ReadbackDigest = hex.EncodeToString(r.readbackSum)
	f.ReadbackMethod, f.ReadbackError, f.ReadbackSeconds = r.readbackMethod, r.readbackErr, r.readbackSeconds
}

// notReadable says why file f's output cannot be read back as the stream
// it was written from; "" when it can.
func notReadable(f wire.SetupFile) string {
	switch {
	case f.Discard:
		return "nothing written (dummy mode)"
	case f.Output == "-":
		return "standard output"
	case f.Cooked:
		if k, err := cook.KindOf(f.InputName); err == nil && k.Archive != "" {
			return "unpacked archive"
		}
	}
	return ""
}

// discard is dolly's dummy-mode output: nothing is written.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
func (discard) Zero(int64) error            { return nil }
func (discard) Close() (sink.Result, error) { return sink.Result{}, nil }
func (discard) Abort()                      {}

func isRoot() bool { return os.Geteuid() == 0 }
