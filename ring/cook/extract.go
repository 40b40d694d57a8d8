package cook

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrUnsafePath is wrapped by the error for an archive entry whose name or
// link target would land outside the output directory, or that goes through
// a symbolic link an earlier entry created.
var ErrUnsafePath = errors.New("unsafe path")

// entryType is what an archive entry makes.
type entryType int

const (
	typeFile entryType = iota
	typeDir
	typeSymlink
	typeHardlink
	typeChar
	typeBlock
	typeFifo
)

// entry is one archive member, whatever the archive format.
type entry struct {
	name     string // as in the archive
	typ      entryType
	mode     uint32 // permission bits with setuid, setgid and sticky (07777)
	uid, gid int
	mtime    time.Time
	atime    time.Time // zero: leave as the system sets it
	linkname string    // symlink target, or hard link target (archive name)
	major    uint32    // device numbers
	minor    uint32
	body     io.Reader // content of a regular file (or of a hard link, cpio)
	size     int64     // length of body
	sparse   bool      // the archive stored the file sparse: keep its holes
}

// dirMeta is a directory's mode and times, applied after all entries, so
// that writing into the directory neither changes its mtime nor fails on a
// read-only mode.
type dirMeta struct {
	name         string
	mode         uint32
	atime, mtime time.Time
}

// extractor unpacks entries under root. All path operations go through
// root (os.Root), so no name or symlink can reach outside it; on top of
// that, no entry may go through a symlink that an earlier entry created
// ("link -> /etc" then "link/passwd" fails, as does "link -> sub" then
// "link/x").
type extractor struct {
	root *os.Root
	opts Options

	symlinks map[string]bool // cleaned names of the symlinks this run created
	dirs     []dirMeta
	dirIndex map[string]int // name -> index in dirs
	buf      []byte
}

func newExtractor(root *os.Root, opts Options) *extractor {
	return &extractor{
		root:     root,
		opts:     opts,
		symlinks: map[string]bool{},
		dirIndex: map[string]int{},
		buf:      make([]byte, 256<<10),
	}
}

func (x *extractor) logf(format string, args ...any) {
	if x.opts.Logf != nil {
		x.opts.Logf(format, args...)
	}
}

// clean turns an archive name into a name relative to the root, as tar
// does: leading "/" and "./" are dropped. A name that escapes the root with
// ".." elements, or that goes through a symlink this run created, is
// refused. "." is the root itself.
func (x *extractor) clean(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: name contains a NUL byte", ErrUnsafePath)
	}
	if escapes(name) {
		return "", fmt.Errorf("%w: %q leaves the output directory", ErrUnsafePath, name)
	}
	n := strings.TrimPrefix(path.Clean("/"+name), "/")
	if n == "" {
		return ".", nil
	}
	for i := 0; i < len(n); i++ {
		if n[i] == '/' && x.symlinks[n[:i]] {
			return "", fmt.Errorf("%w: %q goes through symlink %q created by an earlier entry", ErrUnsafePath, name, n[:i])
		}
	}
	return n, nil
}

// escapes reports whether name, taken relative to a directory after
// dropping leading slashes, climbs above that directory at any point.
func escapes(name string) bool {
	depth := 0
	for _, e := range strings.Split(strings.TrimLeft(name, "/"), "/") {
		switch e {
		case "", ".":
		case "..":
			depth--
			if depth < 0 {
				return true
			}
		default:
			depth++
		}
	}
	return false
}

// apply makes e under the root.
func (x *extractor) apply(e *entry) error {
	name, err := x.clean(e.name)
	if err != nil {
		return err
	}
	if name == "." {
		if e.typ != typeDir {
			return fmt.Errorf("%w: %q names the output directory itself", ErrUnsafePath, e.name)
		}
		if err := x.chown(".", e); err != nil {
			return err
		}
		x.deferDir(".", e)
		return nil
	}
	if err := x.prepare(name, e.typ == typeDir); err != nil {
		return err
	}
	switch e.typ {
	case typeDir:
		if err := x.root.Mkdir(name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if err := x.chown(name, e); err != nil {
			return err
		}
		x.deferDir(name, e)
		return nil
	case typeFile:
		return x.file(name, e)
	case typeSymlink:
		if e.linkname == "" {
			return errors.New("symlink with an empty target")
		}
		if err := x.root.Symlink(e.linkname, name); err != nil {
			return err
		}
		x.symlinks[name] = true
		if err := x.chown(name, e); err != nil {
			return err
		}
		return x.atParent(name, func(dir int, base string) error {
			return x.utimes(dir, base, e)
		})
	case typeHardlink:
		return x.hardlink(name, e)
	case typeChar, typeBlock, typeFifo:
		mode := uint32(unix.S_IFIFO)
		switch e.typ {
		case typeChar:
			mode = unix.S_IFCHR
		case typeBlock:
			mode = unix.S_IFBLK
		}
		dev := int(unix.Mkdev(e.major, e.minor))
		return x.atParent(name, func(dir int, base string) error {
			if err := unix.Mknodat(dir, base, mode|0o600, dev); err != nil {
				return fmt.Errorf("mknod: %w", err)
			}
			if x.opts.SameOwner {
				if err := unix.Fchownat(dir, base, e.uid, e.gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
					return fmt.Errorf("chown: %w", err)
				}
			}
			if err := unix.Fchmodat(dir, base, e.mode&0o7777, 0); err != nil {
				return fmt.Errorf("chmod: %w", err)
			}
			return x.utimes(dir, base, e)
		})
	}
	return fmt.Errorf("unknown entry type %d", e.typ)
}

// prepare creates the parent directories of name and removes what is at
// name, as tar replaces existing files. An existing directory stays when
// keepDir is set (the entry is a directory too).
func (x *extractor) prepare(name string, keepDir bool) error {
	if dir := path.Dir(name); dir != "." {
		if err := x.root.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	fi, err := x.root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if keepDir && fi.IsDir() {
		return nil
	}
	if err := x.root.Remove(name); err != nil {
		what := "file"
		switch {
		case fi.IsDir():
			what = "directory"
		case fi.Mode()&fs.ModeSymlink != 0:
			what = "symlink"
		}
		return fmt.Errorf("replace existing %s: %w", what, err)
	}
	delete(x.symlinks, name)
	if i, ok := x.dirIndex[name]; ok {
		x.dirs[i].name = "" // no longer a directory of ours
		delete(x.dirIndex, name)
	}
	return nil
}

// file writes a regular file: created afresh (never opened through what
// was there), owner, then mode (chown clears setuid), then times.
func (x *extractor) file(name string, e *entry) error {
	f, err := x.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := x.fill(f, e); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return x.atParent(name, func(dir int, base string) error {
		return x.utimes(dir, base, e)
	})
}

// fill writes e's body into f and sets owner and mode through the open
// file.
func (x *extractor) fill(f *os.File, e *entry) error {
	var err error
	if e.sparse {
		err = x.copySparse(f, e)
	} else {
		_, err = io.CopyBuffer(writerOnly{f}, io.LimitReader(e.body, e.size), x.buf)
	}
	if err != nil {
		return err
	}
	if x.opts.SameOwner {
		if err := f.Chown(e.uid, e.gid); err != nil {
			return err
		}
	}
	return f.Chmod(fileMode(e.mode))
}

// copySparse writes e's body, seeking over aligned all-zero blocks, then
// sets the size: the archive's holes stay holes.
func (x *extractor) copySparse(f *os.File, e *entry) error {
	var off int64
	r := io.LimitReader(e.body, e.size)
	for {
		n, rerr := fill(r, x.buf)
		chunk := x.buf[:n]
		for len(chunk) > 0 {
			m := min(len(chunk), rawBlock)
			if allZero(chunk[:m]) {
				if _, err := f.Seek(int64(m), io.SeekCurrent); err != nil {
					return err
				}
			} else if _, err := f.Write(chunk[:m]); err != nil {
				return err
			}
			off += int64(m)
			chunk = chunk[m:]
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	if off < e.size {
		return io.ErrUnexpectedEOF
	}
	return f.Truncate(off)
}

// writerOnly hides (*os.File).ReadFrom, which would probe the body for
// copy_file_range and splice on every file.
type writerOnly struct{ io.Writer }

// hardlink links name to an earlier entry. A cpio hard link may carry the
// data of all its names: then it is written through the new name, after
// checking that the link is a regular file of this run.
func (x *extractor) hardlink(name string, e *entry) error {
	target, err := x.clean(e.linkname)
	if err != nil {
		return fmt.Errorf("hard link target: %w", err)
	}
	if target == "." {
		return fmt.Errorf("%w: hard link to the output directory", ErrUnsafePath)
	}
	if target == name {
		return nil
	}
	if err := x.root.Link(target, name); err != nil {
		return err
	}
	if e.size == 0 {
		return nil
	}
	// Check before opening: opening a FIFO would block, a device would
	// be the device.
	notRegular := fmt.Errorf("hard link with data to %q, which is not a regular file", e.linkname)
	if fi, err := x.root.Lstat(name); err != nil || !fi.Mode().IsRegular() {
		return notRegular
	}
	f, err := x.root.OpenFile(name, os.O_WRONLY|os.O_TRUNC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return notRegular
	}
	if err := x.fill(f, e); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return x.atParent(name, func(dir int, base string) error {
		return x.utimes(dir, base, e)
	})
}

func (x *extractor) chown(name string, e *entry) error {
	if !x.opts.SameOwner {
		return nil
	}
	return x.root.Lchown(name, e.uid, e.gid)
}

func (x *extractor) deferDir(name string, e *entry) {
	m := dirMeta{name: name, mode: e.mode, atime: e.atime, mtime: e.mtime}
	if i, ok := x.dirIndex[name]; ok {
		x.dirs[i] = m
		return
	}
	x.dirIndex[name] = len(x.dirs)
	x.dirs = append(x.dirs, m)
}

// finish applies the directories' modes and times, deepest last-seen
// first.
func (x *extractor) finish() error {
	for i := len(x.dirs) - 1; i >= 0; i-- {
		d := x.dirs[i]
		if d.name == "" {
			continue
		}
		if err := x.root.Chmod(d.name, fileMode(d.mode)); err != nil {
			return fmt.Errorf("directory %q: %w", d.name, err)
		}
		if err := x.root.Chtimes(d.name, d.atime, d.mtime); err != nil {
			return fmt.Errorf("directory %q: %w", d.name, err)
		}
	}
	return nil
}

// atParent runs fn on a descriptor of name's parent directory (opened
// through the root) and name's last element, for the *at system calls
// os.Root has no method for.
func (x *extractor) atParent(name string, fn func(dir int, base string) error) error {
	d, err := x.root.Open(path.Dir(name))
	if err != nil {
		return err
	}
	defer d.Close()
	rc, err := d.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd), path.Base(name)) }); err != nil {
		return err
	}
	return ferr
}

// utimes sets e's times on base in dir without following a symlink.
func (x *extractor) utimes(dir int, base string, e *entry) error {
	ts := []unix.Timespec{timespec(e.atime), timespec(e.mtime)}
	if err := unix.UtimesNanoAt(dir, base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("utimensat: %w", err)
	}
	return nil
}

func timespec(t time.Time) unix.Timespec {
	if t.IsZero() {
		return unix.Timespec{Nsec: unix.UTIME_OMIT}
	}
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}

// fileMode converts Unix permission bits (with setuid 04000, setgid 02000,
// sticky 01000) to an fs.FileMode.
func fileMode(m uint32) fs.FileMode {
	fm := fs.FileMode(m & 0o777)
	if m&unix.S_ISUID != 0 {
		fm |= fs.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		fm |= fs.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		fm |= fs.ModeSticky
	}
	return fm
}
