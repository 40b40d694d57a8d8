package cook

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/herdproject/herd/ring/cook/unixz"
	"github.com/herdproject/herd/ring/digest"
)

// Digest decodes r as k says, without writing anything, and returns the
// length and digest (algorithm alg) of the decoded bytes: for an archive kind, of the
// decompressed archive stream (the tar bytes of a .tar.gz). A Sink fed the
// same input reports the same values in its Result. Digest checks the
// compression (a corrupt or truncated .gz fails) but not the archive's
// structure, which only unpacking does.
func Digest(k Kind, r io.Reader, alg digest.Alg) (n int64, sum []byte, err error) {
	if err := k.check(); err != nil {
		return 0, nil, fmt.Errorf("cook digest: %w", err)
	}
	dec, closeDec, err := newDecoder(k.Compression, r, nil)
	if err != nil {
		return 0, nil, fmt.Errorf("cook digest %s: %w", k, err)
	}
	defer closeDec()
	h := digest.New(alg)
	if _, err := io.CopyBuffer(h, dec, make([]byte, 256<<10)); err != nil {
		return h.Len(), nil, fmt.Errorf("cook digest %s: %w", k, err)
	}
	return h.Len(), h.Sum(nil), nil
}

// newDecoder returns a reader of r decompressed by compression c and a
// function that releases the decoder. Headers are read here, so it blocks
// until r delivers them.
func newDecoder(c string, r io.Reader, logf func(string, ...any)) (io.Reader, func(), error) {
	nop := func() {}
	switch c {
	case compNone:
		return r, nop, nil
	case compGzip:
		g, err := newGzipStream(r, logf)
		if err != nil {
			return nil, nop, err
		}
		return g, nop, nil
	case compZstd:
		// Concurrency 1: the stream is decoded in the calling goroutine,
		// one goroutine per sink as the node's pipeline expects. The
		// default window limit (512 MiB) takes zstd --long=29 images; the
		// zstd program itself stops at 128 MiB unless told otherwise.
		d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nop, fmt.Errorf("zstd: %w", err)
		}
		return errPrefix{d, "zstd"}, d.Close, nil
	case compXz:
		// xz reads its input in small pieces: buffered, it runs four
		// times faster.
		x, err := xz.NewReader(bufio.NewReaderSize(r, 64<<10))
		if err != nil {
			return nil, nop, fmt.Errorf("xz: %w", err)
		}
		return errPrefix{x, "xz"}, nop, nil
	case compZ:
		z, err := unixz.NewReader(r)
		if err != nil {
			return nil, nop, err
		}
		return z, nop, nil
	}
	return nil, nop, fmt.Errorf("%w: compression %q", ErrUnknownKind, c)
}

// errPrefix names the decoder in its errors, unless they are io.EOF.
type errPrefix struct {
	r    io.Reader
	name string
}

func (e errPrefix) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%s: %w", e.name, err)
	}
	return n, err
}

// gzipStream decodes concatenated gzip members as gzip(1) does: every
// member's output in order; after the last member, zero bytes (tape
// padding) are ignored silently and other trailing bytes with a warning.
type gzipStream struct {
	br   *bufio.Reader
	zr   *gzip.Reader
	logf func(string, ...any)
	done bool
}

func newGzipStream(r io.Reader, logf func(string, ...any)) (*gzipStream, error) {
	// gzip.Reader reads through a bufio.Reader as it is, so after a member
	// ends, br stands exactly at the next byte.
	br := bufio.NewReaderSize(r, 64<<10)
	zr, err := gzip.NewReader(br)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("gzip: %w", err)
	}
	zr.Multistream(false)
	return &gzipStream{br: br, zr: zr, logf: logf}, nil
}

func (g *gzipStream) Read(p []byte) (int, error) {
	for !g.done {
		n, err := g.zr.Read(p)
		if err == io.EOF {
			if err := g.nextMember(); err != nil {
				return n, err
			}
			if n == 0 {
				continue
			}
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("gzip: %w", err)
		}
		return n, nil
	}
	return 0, io.EOF
}

// nextMember starts the next member, or ends the stream at the end of the
// input or at trailing bytes that are no gzip member.
func (g *gzipStream) nextMember() error {
	b, err := g.br.Peek(2)
	switch {
	case len(b) == 0 && err == io.EOF:
		g.done = true
		return nil
	case len(b) == 2 && b[0] == 0x1f && b[1] == 0x8b:
		if err := g.zr.Reset(g.br); err != nil {
			return fmt.Errorf("gzip: next member: %w", err)
		}
		g.zr.Multistream(false)
		return nil
	case err != nil && err != io.EOF:
		return fmt.Errorf("gzip: %w", err)
	}
	// Trailing bytes: read them all, so that the input ends normally.
	var total int64
	nonzero := false
	buf := make([]byte, 32<<10)
	for {
		n, err := g.br.Read(buf)
		total += int64(n)
		if !nonzero && !allZero(buf[:n]) {
			nonzero = true
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("gzip: trailing bytes: %w", err)
		}
	}
	if nonzero && g.logf != nil {
		g.logf("gzip: decompression OK, %d bytes of trailing garbage ignored", total)
	}
	g.done = true
	return nil
}

// zeros is a read-only block of zero bytes for comparisons and Zero.
var zeros = make([]byte, 256<<10)

func allZero(p []byte) bool {
	for len(p) > 0 {
		n := min(len(p), len(zeros))
		if !bytes.Equal(p[:n], zeros[:n]) {
			return false
		}
		p = p[n:]
	}
	return true
}

// ErrAborted is the error a Sink's Write, Zero and Close return after
// Abort.
var ErrAborted = errors.New("aborted")
