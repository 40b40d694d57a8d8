package diskimage

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/herdproject/herd/internal/iocount"
	"github.com/herdproject/herd/ring/blockdev"
	"github.com/herdproject/herd/ring/digest"
	"github.com/herdproject/herd/ring/source"
	"github.com/herdproject/herd/ring/stream"
	"github.com/klauspost/compress/zstd"
)

// ErrExists is wrapped by Capture's error when the output exists and
// CaptureOptions.Force is not set.
var ErrExists = errors.New("output exists")

// ErrMountedRW is wrapped by Capture's error for a block device that is
// mounted read-write (itself, a partition of it, or a device-mapper or RAID
// device built on it) when CaptureOptions.Force is not set.
var ErrMountedRW = errors.New("mounted read-write")

// CaptureOptions say what Capture reads and writes. Zero values are
// defaults.
type CaptureOptions struct {
	// Source is the block device or image file to read (required).
	Source string
	// Output is the zstd file to write (required); its name must end in
	// .zst, the name by which ring nodes and Inspect decode it.
	Output string
	// Force overwrites an existing Output and captures a block device
	// that is mounted read-write.
	Force bool
	// Level is the zstd level; 0 = zstd.SpeedDefault.
	Level zstd.EncoderLevel
	// Concurrency is the number of encoder goroutines; 0 = GOMAXPROCS.
	Concurrency int
	// Mounts are what the mount check reads: "" = /proc/self/mountinfo
	// and /sys (tests point them at fakes).
	MountInfo, SysDir string
}

// CaptureResult describes a captured image.
type CaptureResult struct {
	// Source and Output as given.
	Source, Output string
	// Size is the image's length; DataSize the bytes in blocks that are
	// not all zeros (Info.DataSize); CompressedSize the output's length.
	Size, DataSize, CompressedSize int64
	// SHA256 of the uncompressed image, in hex; FileSHA256 of the
	// output file (the compressed bytes).
	SHA256, FileSHA256 string
	// Tree and FileTree are their tree digests (package ring/digest).
	Tree, FileTree string
	// DigestCache is the digest cache written beside Output (see
	// Info.SaveDigestCache), "" when it could not be (Warnings say why).
	DigestCache string
	// Table is the image's MBR partition table (nil: none; NoTable says
	// why).
	Table   *Table
	NoTable string
	// Warnings are findings that did not stop the capture (a mounted
	// device captured with Force).
	Warnings []string
	// Duration of the capture.
	Duration time.Duration
}

// Capture reads opts.Source whole (the holes of a sparse file are not
// read) and writes it zstd-compressed to opts.Output, through a temporary
// file in the same directory that is renamed into place once complete and
// synced. The frame header carries the image's size.
//
// It refuses, unless opts.Force, an Output that exists (ErrExists) and a
// block device mounted read-write (ErrMountedRW): its file systems change
// while it is read, so the image would be inconsistent.
func Capture(ctx context.Context, opts CaptureOptions) (*CaptureResult, error) {
	start := time.Now()
	if opts.Source == "" || opts.Output == "" {
		return nil, errors.New("capture: give the device or file to read and the output file")
	}
	if !strings.HasSuffix(strings.ToLower(opts.Output), ".zst") {
		return nil, fmt.Errorf("capture: output %s: the image is written zstd-compressed: name it *.zst, so that ring nodes (cooked, '>>') and herd image info decode it", opts.Output)
	}
	in, err := os.Open(opts.Source)
	if err != nil {
		return nil, fmt.Errorf("capture: open %s: %w", opts.Source, err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return nil, fmt.Errorf("capture: stat %s: %w", opts.Source, err)
	}
	res := &CaptureResult{Source: opts.Source, Output: opts.Output}
	switch m := st.Mode(); {
	case m&fs.ModeDevice != 0 && m&fs.ModeCharDevice == 0:
		mounts, err := MountedRW(opts.Source, opts.MountInfo, opts.SysDir)
		if err != nil {
			return nil, fmt.Errorf("capture: %w", err)
		}
		if len(mounts) > 0 {
			what := strings.Join(mounts, "; ")
			if !opts.Force {
				return nil, fmt.Errorf("capture: %s is %w (%s): its file systems change while it is read, so the image would be inconsistent; unmount it, remount it read-only (mount -o remount,ro), or boot the golden node from herd's initramfs to capture it; --force captures anyway", opts.Source, ErrMountedRW, what)
			}
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s is mounted read-write (%s): captured anyway (--force); the image may be inconsistent", opts.Source, what))
		}
		if res.Size, err = blockdev.Size(in); err != nil {
			return nil, fmt.Errorf("capture: size of %s: %w", opts.Source, err)
		}
	case m.IsRegular():
		res.Size = st.Size()
	default:
		return nil, fmt.Errorf("capture: %s is a %s: give a block device or an image file", opts.Source, m.Type())
	}
	if err := checkOutput(in, opts); err != nil {
		return nil, err
	}

	dir := filepath.Dir(opts.Output)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(opts.Output)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("capture: create the output in %s: %w", dir, err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	fh, ft := digest.New(digest.SHA256), digest.New(digest.Tree)
	cw := &iocount.Writer{W: io.MultiWriter(tmp, digest.Concurrent{fh, ft})}
	level := opts.Level
	if level == 0 {
		level = zstd.SpeedDefault
	}
	zopts := []zstd.EOption{zstd.WithEncoderLevel(level)}
	if opts.Concurrency > 0 {
		zopts = append(zopts, zstd.WithEncoderConcurrency(opts.Concurrency))
	}
	enc, err := zstd.NewWriter(nil, zopts...)
	if err != nil {
		return nil, fmt.Errorf("capture: zstd: %w", err)
	}
	// The decoded size in the frame header lets a reader check a target
	// is large enough before writing.
	enc.ResetContentSize(cw, res.Size)
	sc := newScanner(true, true)
	if err := scanRaw(ctx, in, res.Size, &captureSink{enc: enc, sc: sc}); err != nil {
		enc.Close()
		return nil, fmt.Errorf("capture %s: %w", opts.Source, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("capture: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return nil, fmt.Errorf("capture: sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	written, err := tmp.Stat()
	if err != nil {
		return nil, fmt.Errorf("capture: stat %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("capture: close %s: %w", tmp.Name(), err)
	}
	if !opts.Force {
		// Someone may have made it meanwhile: link fails where rename
		// would replace.
		if err := os.Link(tmp.Name(), opts.Output); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return nil, fmt.Errorf("capture: %s: %w: give --force to replace it, or another name", opts.Output, ErrExists)
			}
			if err := os.Rename(tmp.Name(), opts.Output); err != nil {
				return nil, fmt.Errorf("capture: %w", err)
			}
		}
		os.Remove(tmp.Name())
	} else if err := os.Rename(tmp.Name(), opts.Output); err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	ok = true
	syncDir(dir)

	r, _ := sc.Close()
	res.DataSize, res.SHA256, res.CompressedSize = sc.data, hex.EncodeToString(r.Digest), cw.N
	res.FileSHA256 = hex.EncodeToString(fh.Sum(nil))
	res.Tree, res.FileTree = sc.treeHex(), hex.EncodeToString(ft.Sum(nil))
	if err := res.saveDigestCache(written); err != nil {
		res.Warnings = append(res.Warnings, fmt.Sprintf("digest cache not written (herd send hashes the image itself): %v", err))
	}
	if t, err := sc.table(); err != nil {
		res.NoTable = strings.TrimPrefix(err.Error(), ErrNoMBR.Error()+": ")
	} else {
		res.Table = t
	}
	res.Duration = time.Since(start)
	return res, nil
}

// saveDigestCache writes the digest cache of the output, written is the
// output file's stat before it was put in place (renaming and linking
// change its ctime, so the output is stat'ed again: it must be the same
// file).
func (res *CaptureResult) saveDigestCache(written os.FileInfo) error {
	now, err := os.Stat(res.Output)
	if err != nil {
		return err
	}
	if !os.SameFile(written, now) {
		return fmt.Errorf("%s was replaced meanwhile", res.Output)
	}
	d, err := source.NewDigestCache(now, res.FileSHA256)
	if err != nil {
		return err
	}
	d.Tree = res.FileTree
	d.Decoded = &source.DecodedDigest{Compression: compressions[FormatZstd], Size: res.Size, SHA256: res.SHA256, Tree: res.Tree}
	if err := d.Write(res.Output); err != nil {
		return err
	}
	res.DigestCache = res.Output + source.DigestCacheSuffix
	return nil
}

// checkOutput refuses an existing output (without Force) and one that is
// the source itself.
func checkOutput(in *os.File, opts CaptureOptions) error {
	ost, err := os.Stat(opts.Output)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("capture: output %s: %w", opts.Output, err)
	}
	if ist, err := in.Stat(); err == nil && os.SameFile(ist, ost) {
		return fmt.Errorf("capture: the output %s is the source itself", opts.Output)
	}
	if !ost.Mode().IsRegular() {
		return fmt.Errorf("capture: output %s exists and is not a regular file: give another name", opts.Output)
	}
	if !opts.Force {
		return fmt.Errorf("capture: %s: %w: give --force to replace it, or another name", opts.Output, ErrExists)
	}
	return nil
}

// captureSink compresses the image and measures it.
type captureSink struct {
	enc *zstd.Encoder
	sc  *scanner
}

func (c *captureSink) Write(p []byte) (int, error) {
	c.sc.Write(p)
	return c.enc.Write(p)
}

func (c *captureSink) Zero(n int64) error {
	if err := c.sc.Zero(n); err != nil {
		return err
	}
	for n > 0 {
		k := min(n, int64(len(stream.Zeros)))
		if _, err := c.enc.Write(stream.Zeros[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// syncDir makes a rename durable; errors are ignored (some file systems
// refuse fsync on directories).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// allocated is what a file takes on disk.
func allocated(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}
