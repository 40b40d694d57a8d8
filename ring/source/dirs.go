package source

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Directory trees (openSUSE dolly's -D DIR[,DIR] -X PATTERN[,PATTERN]) travel
// as one tar stream. Each directory becomes a top entry named by its base
// name, so "-D /etc,/home -O /target" unpacks to /target/etc and
// /target/home. The tar entries keep mode (with setuid, setgid and sticky
// bits), numeric owner and group (no user names: the nodes' boot system has
// no user database), modification time (whole seconds), symbolic links,
// hard links (a later name of an inode already sent becomes a hard-link
// entry), character and block devices, FIFOs and extended attributes (PAX
// SCHILY.xattr.*, which carries file capabilities, SELinux labels and POSIX
// ACLs). Sockets are left out with a warning. Like tar --one-file-system,
// the walk does not descend into other file systems mounted below a
// directory: their mount points travel as empty directories, with a warning.
// Archive/tar picks USTAR, PAX or GNU headers as each entry needs (long
// names, large ids, xattrs).

// copyBufSize is the buffer the tar goroutine reads files with.
const copyBufSize = 1 << 20

// checkDirs makes sure every directory of -D exists, is a directory and
// can be listed, that no two share a base name, and that the -X patterns
// are valid.
func checkDirs(dirs, exclude []string) error {
	if _, err := topNames(dirs); err != nil {
		return err
	}
	for _, d := range dirs {
		f, err := openDir(d)
		if err != nil {
			return err
		}
		f.Close()
	}
	return checkPatterns(exclude)
}

func checkPatterns(exclude []string) error {
	for _, p := range exclude {
		if _, err := path.Match(cleanPattern(p), ""); err != nil {
			return fmt.Errorf("exclude pattern %q: %w: fix -X", p, err)
		}
	}
	return nil
}

func cleanPattern(p string) string {
	if len(p) > 1 {
		p = strings.TrimRight(p, "/")
	}
	return p
}

// openDir opens a directory of -D (following a symbolic link to it).
func openDir(dir string) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, inputError(dir, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, inputError(dir, err)
	}
	if !fi.IsDir() {
		f.Close()
		return nil, fmt.Errorf("input %s is not a directory: -D takes directories (give a file or device with -I)", dir)
	}
	return f, nil
}

// topNames returns each directory's top entry name (its base name; "" for
// the root directory, whose entries go at the top), refusing duplicates.
func topNames(dirs []string) ([]string, error) {
	names := make([]string, len(dirs))
	seen := map[string]string{}
	for i, d := range dirs {
		if d == "" {
			return nil, errors.New("-D: empty directory name")
		}
		abs, err := filepath.Abs(d)
		if err != nil {
			return nil, fmt.Errorf("input %s: %w", d, err)
		}
		name := filepath.Base(abs)
		if name == "/" {
			name = ""
		}
		if other, dup := seen[name]; dup {
			return nil, fmt.Errorf("-D %s and %s would both unpack as %q on the nodes: copy one of them, or their common parent", other, d, name)
		}
		seen[name] = d
		names[i] = name
	}
	return names, nil
}

func (s *Source) openDirs(dirs, exclude []string) error {
	if err := checkDirs(dirs, exclude); err != nil {
		return err
	}
	names, _ := topNames(dirs)
	patterns := make([]string, len(exclude))
	for i, p := range exclude {
		patterns[i] = cleanPattern(p)
	}
	pr, pw := io.Pipe()
	done := make(chan struct{})
	tw := &treeWriter{
		tw:      tar.NewWriter(pw),
		buf:     make([]byte, copyBufSize),
		links:   map[fileID]string{},
		exclude: patterns,
		warn:    s.warn,
	}
	go func() {
		defer close(done)
		err := tw.writeAll(dirs, names)
		pw.CloseWithError(err)
	}()
	s.name = "directories " + strings.Join(dirs, ",") + " (tar)"
	s.size, s.dataSize = -1, -1
	s.r = pr
	s.close = func() error {
		pr.CloseWithError(ErrClosed)
		<-done
		return nil
	}
	return nil
}

type fileID struct{ dev, ino uint64 }

// treeWriter writes directory trees into a tar stream.
type treeWriter struct {
	tw      *tar.Writer
	buf     []byte
	links   map[fileID]string // inode -> first name written, for hard links
	exclude []string
	warn    func(format string, args ...any)
	xattrs  []byte // scratch for listxattr/getxattr
}

func (t *treeWriter) writeAll(dirs, names []string) error {
	for i, d := range dirs {
		if err := t.writeTree(d, names[i]); err != nil {
			return err
		}
	}
	return t.tw.Close()
}

func (t *treeWriter) excluded(rel, base, full string) bool {
	for _, p := range t.exclude {
		for _, c := range [...]string{base, rel, full} {
			if ok, _ := path.Match(p, c); ok {
				return true
			}
		}
	}
	return false
}

func (t *treeWriter) writeTree(dir, top string) error {
	// Walk the directory itself even when dir is a symbolic link to it.
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return inputError(dir, err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return inputError(dir, err)
	}
	var rootDev uint64
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p != root && errors.Is(err, fs.ErrNotExist) {
				t.warn("%s vanished while it was read: left out", p)
				return nil
			}
			return inputError(p, err)
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel != "." && t.excluded(rel, d.Name(), path.Join(filepath.ToSlash(abs), rel)) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				t.warn("%s vanished while it was read: left out", p)
				return nil
			}
			return inputError(p, err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("input %s: no stat information", p)
		}
		if p == root {
			rootDev = st.Dev
		}
		name := path.Join(top, rel)
		if rel == "." {
			name = top
		}
		if name == "" {
			return nil // the root directory itself: its entries go at the top
		}
		if err := t.writeEntry(p, name, fi, st); err != nil {
			return err
		}
		if d.IsDir() && st.Dev != rootDev {
			t.warn("%s is a mount point of another file system: its contents are left out", p)
			return filepath.SkipDir
		}
		return nil
	})
}

func (t *treeWriter) writeEntry(p, name string, fi fs.FileInfo, st *syscall.Stat_t) error {
	hdr := &tar.Header{
		Name:    name,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: time.Unix(st.Mtim.Sec, 0),
	}
	m := fi.Mode()
	if !m.IsDir() && st.Nlink > 1 {
		id := fileID{uint64(st.Dev), st.Ino}
		if first, ok := t.links[id]; ok {
			hdr.Typeflag = tar.TypeLink
			hdr.Linkname = first
			return t.writeHeader(p, hdr)
		}
		t.links[id] = name
	}
	if err := t.addXattrs(p, hdr); err != nil {
		return err
	}
	switch {
	case m.IsDir():
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
		return t.writeHeader(p, hdr)
	case m.IsRegular():
		return t.writeFile(p, hdr, fi.Size())
	case m&fs.ModeSymlink != 0:
		target, err := os.Readlink(p)
		if err != nil {
			return inputError(p, err)
		}
		hdr.Typeflag = tar.TypeSymlink
		hdr.Linkname = target
		return t.writeHeader(p, hdr)
	case m&fs.ModeDevice != 0:
		hdr.Typeflag = tar.TypeBlock
		if m&fs.ModeCharDevice != 0 {
			hdr.Typeflag = tar.TypeChar
		}
		hdr.Devmajor = int64(unix.Major(uint64(st.Rdev)))
		hdr.Devminor = int64(unix.Minor(uint64(st.Rdev)))
		return t.writeHeader(p, hdr)
	case m&fs.ModeNamedPipe != 0:
		hdr.Typeflag = tar.TypeFifo
		return t.writeHeader(p, hdr)
	case m&fs.ModeSocket != 0:
		t.warn("%s is a socket: left out (a program creates it when it runs)", p)
		return nil
	default:
		t.warn("%s is of an unknown type: left out", p)
		return nil
	}
}

func (t *treeWriter) writeHeader(p string, hdr *tar.Header) error {
	if err := t.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("tar entry for %s: %w", p, err)
	}
	return nil
}

// writeFile sends a regular file: exactly size bytes, as its header says.
// A file that shrank while it was read is padded with zeros, one that grew
// is cut, both with a warning.
func (t *treeWriter) writeFile(p string, hdr *tar.Header, size int64) error {
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) {
		// O_NOATIME is only for the owner (or root).
		f, err = os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			t.warn("%s vanished while it was read: left out", p)
			return nil
		}
		return inputError(p, err)
	}
	defer f.Close()
	hdr.Typeflag = tar.TypeReg
	hdr.Size = size
	if err := t.writeHeader(p, hdr); err != nil {
		return err
	}
	// The Reader hides os.File's WriterTo so that our buffer is used.
	n, err := io.CopyBuffer(t.tw, struct{ io.Reader }{io.LimitReader(f, size)}, t.buf)
	if err != nil {
		if errors.Is(err, io.ErrClosedPipe) || errors.Is(err, ErrClosed) {
			return err
		}
		return fmt.Errorf("read %s: %w", p, unwrap(err))
	}
	if n < size {
		t.warn("%s shrank from %d to %d bytes while it was read: padded with zeros", p, size, n)
		for n < size {
			k := min(size-n, int64(len(t.buf)))
			clear(t.buf[:k])
			if _, err := t.tw.Write(t.buf[:k]); err != nil {
				return err
			}
			n += k
		}
	} else if extra, _ := f.Read(t.buf[:1]); extra > 0 {
		t.warn("%s grew while it was read: sent its first %d bytes", p, size)
	}
	return nil
}

// addXattrs records p's extended attributes as PAX SCHILY.xattr records.
func (t *treeWriter) addXattrs(p string, hdr *tar.Header) error {
	names, err := t.listXattrs(p)
	if err != nil || len(names) == 0 {
		return nil // no xattr support here, or none set
	}
	for _, attr := range names {
		v, err := t.getXattr(p, attr)
		if err != nil {
			if errors.Is(err, unix.ENODATA) {
				continue // removed meanwhile
			}
			t.warn("%s: extended attribute %s: %v: left out", p, attr, err)
			continue
		}
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords["SCHILY.xattr."+attr] = v
	}
	return nil
}

func (t *treeWriter) listXattrs(p string) ([]string, error) {
	for {
		if len(t.xattrs) == 0 {
			t.grow()
		}
		n, err := unix.Llistxattr(p, t.xattrs)
		if errors.Is(err, unix.ERANGE) {
			t.grow()
			continue
		}
		if err != nil || n == 0 {
			return nil, err
		}
		var names []string
		for _, s := range strings.Split(string(t.xattrs[:n]), "\x00") {
			if s != "" {
				names = append(names, s)
			}
		}
		return names, nil
	}
}

func (t *treeWriter) getXattr(p, attr string) (string, error) {
	for {
		n, err := unix.Lgetxattr(p, attr, t.xattrs)
		if errors.Is(err, unix.ERANGE) {
			t.grow()
			continue
		}
		if err != nil {
			return "", err
		}
		return string(t.xattrs[:n]), nil
	}
}

func (t *treeWriter) grow() {
	t.xattrs = make([]byte, max(2*len(t.xattrs), 4096))
}
