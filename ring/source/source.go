// Package source opens what the sender streams for one plan file: a regular
// file or block device, dolly's split inputs (X_0, X_1, ...), openSUSE
// dolly's directory trees (-D, sent as one tar stream), optionally gzipped
// on the fly (dolly's "compressed outfile"), and dolly's -t dummy data.
//
// A Source only reads. Hole detection is the sender's job: it looks at the
// bytes it reads and sends runs of zeros as holes; DataSize only feeds the
// nodes' free-space checks.
package source

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"

	"github.com/herdproject/herd/ring/blockdev"
	"github.com/herdproject/herd/ring/plan"
)

// Options tune OpenWith. The zero value is what Open uses.
type Options struct {
	// Compress is not used: whether the stream is gzipped on the fly comes
	// from plan.File.CompressedOut (and CompressedIn).
	Compress bool
	// Warn, when set, is called with each warning (a socket left out of a
	// directory tree, a file that vanished or changed while it was read),
	// from the goroutine that generates the stream. Warnings are also kept
	// for Source.Warnings.
	Warn func(msg string)
}

// ErrClosed is what Read returns after Close.
var ErrClosed = errors.New("source closed")

// maxWarnings bounds what Source.Warnings keeps.
const maxWarnings = 1000

// Source is one plan file's input as a byte stream. Read and Close may be
// called from different goroutines; Read itself from one at a time.
type Source struct {
	name     string
	size     int64
	dataSize int64
	r        io.Reader
	ra       io.ReaderAt // nil unless the stream can be re-read at any offset
	close    func() error
	// file and fi are the input when the stream is one regular file's
	// bytes as they are (nil otherwise): its holes can be found
	// (Sparse) and it may have a digest cache (DigestCache).
	file *os.File
	fi   fs.FileInfo

	warnFn    func(string)
	warnMu    sync.Mutex
	warnings  []string
	warnCount int

	closeOnce sync.Once
	closeErr  error
}

// Open opens f's input(s) for reading.
func Open(f plan.File) (*Source, error) { return OpenWith(f, Options{}) }

// OpenWith is Open with options.
func OpenWith(f plan.File, opts Options) (*Source, error) {
	s := &Source{warnFn: opts.Warn}
	var err error
	switch {
	case len(f.Dirs) > 0:
		err = s.openDirs(f.Dirs, f.Exclude)
	case f.SplitIn:
		err = s.openSplit(f.Input)
	default:
		err = s.openFile(f.Input)
	}
	if err != nil {
		return nil, err
	}
	if f.CompressedOut && !f.CompressedIn {
		s.compress()
	}
	return s, nil
}

// Check makes sure f's inputs exist and can be opened, without reading
// them: each file or device (and each part of a split input) is opened and
// closed; each directory of Dirs is listed-ready, and the exclude patterns
// are valid.
func Check(f plan.File) error {
	switch {
	case len(f.Dirs) > 0:
		return checkDirs(f.Dirs, f.Exclude)
	case f.SplitIn:
		parts, err := splitParts(f.Input)
		if err != nil {
			return err
		}
		for _, p := range parts {
			in, err := openInput(p, false)
			if err != nil {
				return err
			}
			in.f.Close()
		}
		return nil
	default:
		in, err := openInput(f.Input, false)
		if err != nil {
			return err
		}
		return in.f.Close()
	}
}

// Size is the stream's length in bytes, or -1 when it is not known in
// advance (gzipped on the fly, directory trees, pipes).
func (s *Source) Size() int64 { return s.size }

// DataSize is the number of stream bytes that are not holes (found with
// SEEK_DATA/SEEK_HOLE on regular files; the size of a device), or -1 when
// unknown. It is an estimate for free-space checks: the file may change.
func (s *Source) DataSize() int64 { return s.dataSize }

// Name is what to show the user for this input.
func (s *Source) Name() string { return s.name }

// ReaderAt returns the stream for reads at any offset (pread, beside the
// sequential Read), or nil when it cannot be re-read: a pipe, a stream
// compressed on the fly, a directory tree, split inputs. The sender uses it
// to feed a node again from where it is after a bypass.
func (s *Source) ReaderAt() io.ReaderAt { return s.ra }

// Read reads the stream. For a regular file or device it is a plain read.
func (s *Source) Read(p []byte) (int, error) { return s.r.Read(p) }

// Close stops the stream and releases what it holds (files, the goroutines
// of directory trees and compression). Safe to call twice.
func (s *Source) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

// Warnings returns the warnings so far (at most the first 1000) and how
// many there were in all.
func (s *Source) Warnings() ([]string, int) {
	s.warnMu.Lock()
	defer s.warnMu.Unlock()
	return append([]string(nil), s.warnings...), s.warnCount
}

func (s *Source) warn(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.warnMu.Lock()
	s.warnCount++
	if len(s.warnings) < maxWarnings {
		s.warnings = append(s.warnings, msg)
	}
	s.warnMu.Unlock()
	if s.warnFn != nil {
		s.warnFn(msg)
	}
}

// input is one opened file or device.
type input struct {
	f        *os.File
	fi       fs.FileInfo // the open file's stat
	size     int64       // -1 for pipes and character devices
	dataSize int64
}

// openInput opens a file or block device ("-": standard input) for reading
// and measures its size;
// with measure, also its data size (SEEK_DATA walks the whole file, so
// checks skip it).
func openInput(path string, measure bool) (*input, error) {
	if path == "" {
		return nil, errors.New("no input: give a file or device (-I) or directories (-D)")
	}
	name := path
	if path == "-" {
		// Standard input ("-I -", as dolly's "-I [FILE|-]"): a pipe is
		// read to its end; a redirected file or device is measured.
		name = "/dev/stdin"
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, inputError(path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, inputError(path, err)
	}
	in := &input{f: f, fi: fi, size: -1, dataSize: -1}
	switch m := fi.Mode(); {
	case m.IsDir():
		f.Close()
		return nil, fmt.Errorf("input %s is a directory: use -D DIR to copy a directory tree (or give a file or device)", path)
	case m.IsRegular():
		in.size = fi.Size()
		if measure {
			in.dataSize = dataSize(f, in.size)
		}
	case m&fs.ModeDevice != 0 && m&fs.ModeCharDevice == 0:
		size, err := blockdev.Size(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("input %s: size of the device: %w", path, err)
		}
		in.size, in.dataSize = size, size
	case m&(fs.ModeCharDevice|fs.ModeNamedPipe) != 0:
		// Read until EOF; the length is not known.
	default:
		f.Close()
		return nil, fmt.Errorf("input %s is not a file or device", path)
	}
	return in, nil
}

// inputError says what is wrong with an input path, once.
func inputError(path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("input %s: %w: make it readable for the sender (or run it as root)", path, err)
	}
	return fmt.Errorf("input %s: %w", path, err)
}

func (s *Source) openFile(path string) error {
	in, err := openInput(path, true)
	if err != nil {
		return err
	}
	s.name, s.size, s.dataSize = path, in.size, in.dataSize
	s.r = in.f
	if in.size >= 0 {
		s.ra = in.f
	}
	if in.fi.Mode().IsRegular() && path != "-" {
		s.file, s.fi = in.f, in.fi
	}
	s.close = in.f.Close
	return nil
}

// DigestCache returns the digest cache of the input (IMAGE.herd-digest,
// see ReadDigestCache) when the stream is a regular file's bytes as they
// are and the cache describes the file as it was opened. The error wraps
// ErrNoDigestCache when there is none or the input cannot have one,
// ErrStaleDigestCache when it no longer matches the file.
func (s *Source) DigestCache() (DigestCache, error) {
	if s.fi == nil {
		return DigestCache{}, fmt.Errorf("%s: %w: not a regular file sent as it is", s.name, ErrNoDigestCache)
	}
	return ReadDigestCache(s.name, s.fi)
}
