package sink

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/herdproject/herd/ring/blockdev"
	"golang.org/x/sys/unix"
)

// Options tell Check and Open what to expect of a raw output.
type Options struct {
	// Size is the expected stream length in bytes, or -1 when unknown. A
	// block device smaller than Size is refused; Size stands in for
	// DataSize in the free-space check when DataSize is unknown.
	Size int64
	// DataSize is the number of stream bytes that are not holes, or -1 when
	// unknown: what a sparse regular file will really take on disk.
	DataSize int64
	// Split, when > 0, is dolly's "outfile X split SIZE": the stream goes to
	// X_0, X_1, ... (regular files) of at most Split bytes each.
	Split int64
	// NoSync is dolly's -n: Close does not fsync.
	NoSync bool
	// Stdout receives the stream when the path is "-"; nil means os.Stdout.
	Stdout io.Writer
}

// stdoutName names "-" in messages.
const stdoutName = "standard output"

// Check tells whether Open(path, opts) can be expected to succeed and the
// stream to fit, without writing or creating anything: the parent directory
// exists and is writable, an existing output is writable and not a
// directory, a block device is neither mounted nor held by another program
// and is large enough, a file system has room for the data.
func Check(path string, opts Options) error {
	if path == "-" {
		if opts.Split > 0 {
			return errors.New("standard output cannot be split: give a file name to split into")
		}
		return nil
	}
	if path == "" {
		return errors.New("no output path")
	}
	if opts.Split > 0 {
		return checkSplit(path, opts)
	}
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		dir := filepath.Dir(path)
		if err := checkDir(dir); err != nil {
			return err
		}
		return checkSpace(path, dir, 0, opts)
	}
	if err != nil {
		return fmt.Errorf("output %s: %w", path, unwrapPath(err))
	}
	switch m := fi.Mode(); {
	case m.IsDir():
		return fmt.Errorf("output %s is a directory: give a file or device to write the image to (a directory only takes an archive, with >>)", path)
	case m&fs.ModeDevice != 0 && m&fs.ModeCharDevice == 0:
		return checkBlock(path, opts)
	case m&(fs.ModeCharDevice|fs.ModeNamedPipe) != 0:
		return checkWritable(path)
	case m.IsRegular():
		if err := checkWritable(path); err != nil {
			return err
		}
		return checkSpace(path, filepath.Dir(path), allocated(fi), opts)
	default:
		return fmt.Errorf("output %s is a %s, not a file or device: refusing to write", path, typeName(m))
	}
}

func checkSplit(path string, opts Options) error {
	dir := filepath.Dir(path)
	if err := checkDir(dir); err != nil {
		return err
	}
	// The parts this stream will write (all of them when its size is
	// unknown) must not be in the way; the space of those that exist comes
	// back when they are truncated, and so does that of stale parts after
	// them, which Close removes. One directory listing, however many parts.
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("directory %s: %w", dir, unwrapPath(err))
	}
	prefix := filepath.Base(path) + "_"
	parts := map[int64]bool{}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok {
			continue
		}
		i, err := strconv.ParseInt(rest, 10, 64)
		if err != nil || i < 0 || strconv.FormatInt(i, 10) != rest {
			continue
		}
		parts[i] = true
	}
	run := int64(0) // parts _0 .. _run-1 exist
	for parts[run] {
		run++
	}
	var reclaim int64
	for i := range parts {
		inWay := opts.Size < 0 || i*opts.Split < opts.Size
		if !inWay && i >= run {
			continue
		}
		part := partName(path, int(i))
		fi, err := os.Stat(part)
		if err != nil {
			return fmt.Errorf("output %s: %w", part, unwrapPath(err))
		}
		if !fi.Mode().IsRegular() {
			if inWay {
				return fmt.Errorf("output %s exists and is not a regular file: remove it or split under another name", part)
			}
			continue
		}
		if inWay {
			if err := checkWritable(part); err != nil {
				return err
			}
		}
		if i < run || (opts.Size >= 0 && inWay) {
			reclaim += allocated(fi)
		}
	}
	return checkSpace(path, dir, reclaim, opts)
}

// checkDir makes sure dir exists, is a directory and can take new files.
func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("directory %s does not exist on this node: create it first (or fix the output path)", dir)
	}
	if err != nil {
		return fmt.Errorf("directory %s: %w", dir, unwrapPath(err))
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory: fix the output path", dir)
	}
	if err := unix.Access(dir, unix.W_OK); err != nil {
		return fmt.Errorf("directory %s is not writable: %w", dir, err)
	}
	return nil
}

func checkWritable(path string) error {
	if err := unix.Access(path, unix.W_OK); err != nil {
		return fmt.Errorf("output %s is not writable: %w", path, err)
	}
	return nil
}

// checkSpace compares the data the stream will bring with what the file
// system holding dir has free, counting reclaim bytes that truncating the
// existing output gives back.
func checkSpace(path, dir string, reclaim int64, opts Options) error {
	need := opts.DataSize
	if need < 0 {
		need = opts.Size
	}
	if need < 0 {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("free space of %s: %w", dir, err)
	}
	avail := int64(st.Bavail)*int64(st.Bsize) + reclaim
	if need > avail {
		return fmt.Errorf("not enough space for %s: it needs %.1f MiB, %.1f MiB are available: free space on this node, or write to a larger file system or a device",
			path, mib(need), mib(avail))
	}
	return nil
}

func checkBlock(path string, opts Options) error {
	// O_EXCL on a block device fails with EBUSY while it is mounted or
	// claimed (device mapper, RAID, swap, another O_EXCL opener).
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_EXCL, 0)
	if err != nil {
		return blockOpenError(path, err)
	}
	size, err := blockdev.Size(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("size of %s: %w", path, err)
	}
	if opts.Size >= 0 && size < opts.Size {
		return tooSmall(path, size, opts.Size)
	}
	return checkWritable(path)
}

func blockOpenError(path string, err error) error {
	if errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("target %s is in use (mounted, or held by another program: LVM, RAID, swap): unmount or release it first; refusing to write", path)
	}
	return fmt.Errorf("output %s: %w", path, unwrapPath(err))
}

func tooSmall(path string, have, need int64) error {
	return fmt.Errorf("target %s is %d bytes, the image is %d: refusing to write", path, have, need)
}

// allocated is what a file really takes on disk (sparse files take less
// than their size).
func allocated(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// unwrapPath strips an *fs.PathError so that messages name the path once.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// partName is dolly's name for part i of a split output: "X_i".
func partName(path string, i int) string {
	return fmt.Sprintf("%s_%d", path, i)
}

func typeName(m fs.FileMode) string {
	switch {
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m&fs.ModeIrregular != 0:
		return "special file"
	}
	return m.Type().String()
}
