package relay

import (
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"github.com/herdproject/herd/ring/cook"
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
	logf    func(string, ...any)
	written atomic.Int64
	file    atomic.Int32

	cur     sink.Sink
	results []writeResult
}

type writeResult struct {
	err     string
	written int64
	sha     []byte // set for cooked files: the digest of the decoded bytes
}

func newWriter(s *wire.Setup, depth int, stdout io.Writer, noSync bool, logf func(string, ...any)) *writer {
	w := &writer{
		in: make(chan *stream.Chunk, depth), done: make(chan struct{}),
		files: s.Files, stdout: stdout, noSync: noSync, logf: logf,
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
		w.logf("file %d: %v", f+1, err)
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
		w.results[f].written, w.results[f].sha = res.Bytes, res.SHA256
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
			Logf:      w.logf,
		})
	default:
		return sink.Open(f.Output, opts)
	}
}

// close ends the stage; a file left open by a broken stream is aborted.
func (w *writer) close(cause error) {
	close(w.in)
	<-w.done
	if w.cur != nil {
		w.fail(uint32(w.file.Load()), fmt.Errorf("stream broken: %v", cause))
	}
}

// discard is dolly's dummy-mode output: nothing is written.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
func (discard) Zero(int64) error            { return nil }
func (discard) Close() (sink.Result, error) { return sink.Result{}, nil }
func (discard) Abort()                      {}

func isRoot() bool { return os.Geteuid() == 0 }
